package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/crwrap/crwrap/internal/archive"
	"github.com/crwrap/crwrap/internal/config"
	"github.com/crwrap/crwrap/internal/entrypoint"
	"github.com/crwrap/crwrap/internal/inspect"
)

func newInspectCmd() *cobra.Command {
	var asJSON, digests bool
	cmd := &cobra.Command{
		Use:   "inspect DIR",
		Short: "Describe a checkpoint: app, command, when, host, versions, sizes, processes, memory, CRIU statistics",
		Long: `Describe a checkpoint directory (or the <root>/<directory>/<name> link to it). A damaged
checkpoint (files missing or truncated, unreadable images) is reported as such and the
command exits 1; --verify also compares every file's sha256 with the manifest.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := inspect.InspectWith(args[0], inspect.Options{Digests: digests})
			if err != nil {
				return err
			}
			if asJSON {
				err = r.WriteJSON(cmd.OutOrStdout())
			} else {
				err = r.WriteText(cmd.OutOrStdout())
			}
			if err != nil {
				return err
			}
			if r.Damaged {
				return fmt.Errorf("checkpoint %s is damaged", args[0])
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&digests, "verify", false, "also compare every file's sha256 with the manifest")
	return cmd
}

func newExportCmd() *cobra.Command {
	var out, compression, pod, namespace, container string
	cmd := &cobra.Command{
		Use:   "export DIR [-o FILE]",
		Short: "Write a checkpoint archive (tar, optionally zstd or gzip) that checkpointctl reads",
		Long: `Write the checkpoint DIR as an archive in the layout Podman, CRI-O and checkpointctl share.
Without -o the file is named as the kubelet names checkpoint archives:
checkpoint-<pod>_<namespace>-<container>-<time>.tar. The compression follows the file name
(.tar.zst, .tar.gz) unless --compression says otherwise.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := archive.CompressionAuto
			if compression != "" {
				var err error
				if c, err = archive.ParseCompression(compression); err != nil {
					return usageError{err}
				}
			}
			if out == "" {
				name := container
				if name == "" {
					name = filepath.Base(filepath.Clean(args[0]))
				}
				out = archive.ArchiveName(pod, namespace, name, time.Now()) + c.Extension()
			}
			if err := archive.ExportFile(args[0], out, archive.ExportOptions{Compression: c}); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "archive file to write")
	cmd.Flags().StringVar(&compression, "compression", "", "none, zstd or gzip (default: from the file name)")
	cmd.Flags().StringVar(&pod, "pod", "pod", "pod name for the default file name")
	cmd.Flags().StringVar(&namespace, "namespace", "default", "namespace for the default file name")
	cmd.Flags().StringVar(&container, "container", "", "container name for the default file name (default: the checkpoint's name)")
	return cmd
}

func newImportCmd() *cobra.Command {
	var noVerify bool
	cmd := &cobra.Command{
		Use:   "import FILE DIR",
		Short: "Unpack a checkpoint archive into a new checkpoint directory crwrap can restore",
		Long: `Unpack FILE (tar, zstd or gzip, detected) into DIR, which must not exist. Entries that
could write outside DIR (absolute paths, "..", links out of the tree, devices) are refused
and nothing is left behind; files are made readable by root only. The inner rootfs-diff.tar
and deleted.files are checked as a restore checks them, a crwrap.json as a restore verifies
it; archives over 100,000 entries, 256 GiB or a 128 MiB zstd window are refused.`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			err := archive.ImportFile(args[0], args[1], archive.ImportOptions{NoVerify: noVerify})
			if errors.Is(err, os.ErrExist) {
				return usageError{fmt.Errorf("import into %s: it exists already", args[1])}
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&noVerify, "no-verify", false, "do not compare the files with crwrap.json (the safety checks still run)")
	return cmd
}

func newVerifyCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "verify [-- CMD ARG...]",
		Short: "CI gate: run the app, wait for ready, checkpoint, restore, wait for ready again",
		Long: `Run the app as in checkpoint mode but into a temporary directory, restore it from there,
wait until it is ready again and stop it. Exits 0 only if all of that worked; otherwise 1 with
the cause in one line (for CRIU failures, with CRIU's own words). Use it in the CI job that
builds the image, so an app that cannot be checkpointed never reaches a cluster.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			load := func(extra map[string]string) (*config.Settings, error) { return g.load(args, extra) }
			if err := entrypoint.Verify(cmd.Context(), load, entrypoint.Options{Logger: newLogger}); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "verify: ok: the app was ready, checkpointed, restored and ready again")
			return nil
		},
	}
}

// exactArgs is cobra.ExactArgs as a usage error (exit 2).
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
