package spec

import (
	"fmt"
	"io"

	"github.com/moby/sys/user"
)

// User is who the app runs as: the process.user of the spec, and its home directory.
type User struct {
	UID, GID       uint32
	AdditionalGids []uint32
	// Home is the user's home directory from passwd ("" when the user has no entry).
	Home string
}

// ResolveUser turns cr.container.user (USER or USER:GROUP, names or numbers, as Docker's
// USER) into ids, reading the app's passwd and group files (nil readers: numbers only). A
// user's supplementary groups are the groups that list it. It does no I/O of its own.
func ResolveUser(spec string, passwd, group io.Reader) (User, error) {
	u, err := user.GetExecUser(spec, &user.ExecUser{Home: ""}, passwd, group)
	if err != nil {
		return User{}, fmt.Errorf("user %q: %w", spec, err)
	}
	out := User{UID: uint32(u.Uid), GID: uint32(u.Gid), Home: u.Home}
	for _, g := range u.Sgids {
		if uint32(g) != out.GID {
			out.AdditionalGids = append(out.AdditionalGids, uint32(g))
		}
	}
	return out, nil
}
