// Package pemfile reads PEM key files: bounded in size, the first key block returned.
package pemfile

import (
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
)

// MaxSize bounds what a key file may hold; PEM keys are at most a few KiB.
const MaxSize = 64 << 10

// ReadKey returns the first PEM block of path that is not EC parameters (openssl writes
// "EC PARAMETERS" before "EC PRIVATE KEY" with -param_out).
func ReadKey(path string) (*pem.Block, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rest, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if len(rest) > MaxSize {
		return nil, fmt.Errorf("larger than %d KiB: not a PEM key", MaxSize>>10)
	}
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM block: not a PEM key file")
		}
		if block.Type != "EC PARAMETERS" {
			return block, nil
		}
	}
}
