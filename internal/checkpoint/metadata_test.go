package checkpoint

import "testing"

func TestSpecAnnotations(t *testing.T) {
	a := SpecAnnotations("app", "app-0", "")
	if a[AnnotationContainerManager] != ContainerManager || a[AnnotationContainerName] != "app" || a[AnnotationSandboxName] != "app-0" {
		t.Errorf("got %v", a)
	}
	if _, ok := a[AnnotationSandboxNamespace]; ok {
		t.Errorf("empty namespace set: %v", a)
	}
}
