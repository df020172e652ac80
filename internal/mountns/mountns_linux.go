//go:build linux && cgo

package mountns

/*
#cgo CFLAGS: -Wall
extern void crwrap_mountns(int argc, char **argv);
extern int crwrap_mountns_entered(void);
void __attribute__((constructor)) crwrap_mountns_init(int argc, char **argv) {
	crwrap_mountns(argc, argv);
}
*/
import "C"

// Entered reports whether the constructor moved this process into a private mount namespace.
func Entered() bool { return C.crwrap_mountns_entered() == 1 }
