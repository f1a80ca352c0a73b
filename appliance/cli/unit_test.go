package cli

import (
	"os"
	"strings"
	"testing"
)

// TestSystemdUnit: systemctl reload sends the SIGHUP that serve reloads
// on, and the unit refers to nothing that is not shipped.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("../../image/systemd/nmos-certs.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	if !strings.Contains(unit, "\nExecReload=/bin/kill -HUP $MAINPID\n") {
		t.Error("the unit has no ExecReload sending SIGHUP")
	}
	if strings.Contains(unit, "man:") {
		t.Error("the unit names a man page, which is not shipped")
	}
	if !strings.Contains(serveCommand().Description, "SIGHUP reloads") {
		t.Error("serve no longer says it reloads on SIGHUP")
	}
}
