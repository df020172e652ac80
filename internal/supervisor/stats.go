package supervisor

import (
	"fmt"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/crit"

	"github.com/crwrap/crwrap/internal/metrics"
)

func us(v uint32) time.Duration { return time.Duration(v) * time.Microsecond }

// readDumpStats reads CRIU's stats-dump from its work directory.
func readDumpStats(dir string) (metrics.DumpStats, error) {
	st, err := crit.GetDumpStats(dir)
	if err != nil {
		return metrics.DumpStats{}, fmt.Errorf("read CRIU dump statistics: %w", err)
	}
	return metrics.DumpStats{
		FreezingTime: us(st.GetFreezingTime()),
		FrozenTime:   us(st.GetFrozenTime()),
		MemdumpTime:  us(st.GetMemdumpTime()),
		MemwriteTime: us(st.GetMemwriteTime()),
		PagesScanned: st.GetPagesScanned(),
		PagesWritten: st.GetPagesWritten(),
	}, nil
}

// readRestoreStats reads CRIU's stats-restore from its work directory.
func readRestoreStats(dir string) (metrics.RestoreStats, error) {
	st, err := crit.GetRestoreStats(dir)
	if err != nil {
		return metrics.RestoreStats{}, fmt.Errorf("read CRIU restore statistics: %w", err)
	}
	return metrics.RestoreStats{
		ForkingTime:     us(st.GetForkingTime()),
		RestoreTime:     us(st.GetRestoreTime()),
		PagesCompared:   st.GetPagesCompared(),
		PagesSkippedCOW: st.GetPagesSkippedCow(),
		PagesRestored:   st.GetPagesRestored(),
	}, nil
}
