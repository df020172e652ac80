//go:build linux && cgo

package multicall

/*
#cgo CFLAGS: -Wall
extern void crwrap_multicall(int argc, char **argv);
void __attribute__((constructor)) crwrap_multicall_init(int argc, char **argv) {
	crwrap_multicall(argc, argv);
}
*/
import "C"
