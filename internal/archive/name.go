package archive

import (
	"fmt"
	"time"
)

// ArchiveName names a checkpoint archive the way the kubelet does for
// POST /checkpoint/{namespace}/{pod}/{container}:
// checkpoint-<pod>_<namespace>-<container>-<RFC 3339 time>.tar, where <pod>_<namespace> is
// the kubelet's pod full name. t is used as given (the kubelet formats its local time; pass UTC
// for names that sort across nodes). Add the compression's extension, if any, yourself.
func ArchiveName(podName, namespace, container string, t time.Time) string {
	return fmt.Sprintf("checkpoint-%s_%s-%s-%s.tar", podName, namespace, container, t.Format(time.RFC3339))
}
