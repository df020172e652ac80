package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync/atomic"
)

// touchHandler answers /touch?pages=N (default 64): it reads one byte of each of N random
// 4 KiB pages of the heap, as a request of a real app reads a little of its caches here and
// there. After a lazy restore each first touch of a page is a fault served by CRIU's daemon.
func touchHandler(ready *atomic.Bool) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			http.Error(rw, "warming up", http.StatusServiceUnavailable)
			return
		}
		n := 64
		if v, err := strconv.Atoi(r.URL.Query().Get("pages")); err == nil && v > 0 && v <= 1<<16 {
			n = v
		}
		var sum int
		for range n {
			if len(heap) == 0 {
				break
			}
			b := heap[rand.IntN(len(heap))]
			sum += int(b[rand.IntN(len(b)/4096)*4096])
		}
		fmt.Fprint(rw, sum)
	}
}
