package file

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A DELETE's cost must not grow with the zones held (issue 15: 100,000 zones per agent;
// Designate deletes a tenant's zones in bursts). 20,000 zone files beside the one deleted.
func BenchmarkDeleteAmongManyZones(b *testing.B) {
	dir := b.TempDir()
	be, err := New(Config{ZoneFilePath: dir, FileMode: 0o644, CommandTimeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 20000 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("other%d.example.zone", i)), nil, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		zone := fmt.Sprintf("gone%d.example.", i)
		if err := os.WriteFile(be.dir.Path(zone), nil, 0o644); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := be.Delete(context.Background(), zone); err != nil {
			b.Fatal(err)
		}
	}
}
