package config

import "path/filepath"

func joinClean(elem ...string) string { return filepath.Join(elem...) }
