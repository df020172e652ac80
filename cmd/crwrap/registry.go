package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/crwrap/crwrap/internal/layercrypt"
	"github.com/crwrap/crwrap/internal/registry"
	"github.com/crwrap/crwrap/internal/signature"
	"github.com/crwrap/crwrap/internal/version"
)

func remoteOptions() []registry.Option {
	return []registry.Option{registry.WithRemote(
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithUserAgent("crwrap/"+version.Version),
	)}
}

func newPushCmd() *cobra.Command {
	var signingKey, encryptionKey string
	cmd := &cobra.Command{
		Use:   "push DIR REF",
		Short: "Push a checkpoint directory to an OCI registry",
		Long: `Push the checkpoint DIR (or the <root>/<directory>/<name> link to it) as an OCI image.
REF is a repository (registry.example.com/team/app), and the tag is derived from the
checkpoint's app and host class as a restoring node derives it, or repository:tag to choose
the tag. Credentials come from the Docker config ($DOCKER_CONFIG/config.json). With
--signing-key the image is signed the way cosign stores signatures (REPO:sha256-<hex>.sig); with
--encryption-key its layers are encrypted (ocicrypt JWE). Prints the pushed reference with
its digest.`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, rerr := name.NewRepository(args[1])
			tag, terr := name.NewTag(args[1])
			explicit := terr == nil && strings.Contains(args[1][strings.LastIndex(args[1], "/")+1:], ":")
			if rerr != nil && !explicit {
				return usageError{fmt.Errorf("push: %q is neither a repository nor repository:tag", args[1])}
			}
			opts := remoteOptions()
			if signingKey != "" {
				k, err := signature.LoadSigner(signingKey)
				if err != nil {
					return usageError{err}
				}
				opts = append(opts, registry.SignWith(k))
			}
			if encryptionKey != "" {
				k, err := layercrypt.LoadPublicKey(encryptionKey)
				if err != nil {
					return usageError{err}
				}
				opts = append(opts, registry.EncryptFor(k))
			}
			tagName := ""
			if explicit {
				repo, tagName = tag.Context(), tag.TagStr()
			}
			p, err := registry.PushDir(cmd.Context(), args[0], repo, tagName, opts...)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s@%s\n", p.Ref, p.Digest.DigestStr())
			return nil
		},
	}
	cmd.Flags().StringVar(&signingKey, "signing-key", "", "PEM private key (ECDSA P-256 or Ed25519) to sign the image with")
	cmd.Flags().StringVar(&encryptionKey, "encryption-key", "", "PEM public key to encrypt the layers for")
	return cmd
}

func newPullCmd() *cobra.Command {
	var verifyKey, decryptionKey string
	cmd := &cobra.Command{
		Use:   "pull REF DIR",
		Short: "Pull a checkpoint image into a new checkpoint directory crwrap can restore",
		Long: `Pull the checkpoint image REF (repository:tag or repository@sha256:...) into DIR, which
must not exist. Every blob's digest is checked while it is written and every file against
crwrap.json; on any failure nothing is left. checkpointctl reads the result. With
--verify-key only an image signed by its pair is pulled; --decryption-key decrypts
encrypted layers.`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := name.ParseReference(args[0])
			if err != nil {
				return usageError{fmt.Errorf("pull: %q: %v", args[0], err)}
			}
			if _, err := os.Lstat(args[1]); err == nil { // a usage error before any key is read
				return usageError{fmt.Errorf("pull into %s: it exists already", args[1])}
			}
			opts := append(remoteOptions(), registry.WithFileDigests(true))
			if verifyKey != "" {
				k, err := signature.LoadVerifier(verifyKey)
				if err != nil {
					return usageError{err}
				}
				opts = append(opts, registry.VerifyWith(k))
			}
			if decryptionKey != "" {
				k, err := layercrypt.LoadPrivateKey(decryptionKey)
				if err != nil {
					return usageError{err}
				}
				opts = append(opts, registry.DecryptWith(k))
			}
			digest, err := registry.PullDir(cmd.Context(), ref, args[1], opts...)
			if errors.Is(err, os.ErrExist) {
				return usageError{fmt.Errorf("pull into %s: it exists already", args[1])}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", digest)
			return nil
		},
	}
	cmd.Flags().StringVar(&verifyKey, "verify-key", "", "PEM public key: pull only an image signed by its pair")
	cmd.Flags().StringVar(&decryptionKey, "decryption-key", "", "PEM private key that decrypts the layers")
	return cmd
}
