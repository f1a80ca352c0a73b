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
	// What the unit names, the package ships (image/deb/nfpm.yaml).
	pkg, err := os.ReadFile("../../image/deb/nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	shipped := func(path string) bool {
		if strings.Contains(string(pkg), "dst: "+path+"\n") {
			return true
		}
		// docs/*.md is shipped whole under /usr/share/doc/nmos-certs/docs/.
		doc, ok := strings.CutPrefix(path, "/usr/share/doc/nmos-certs/docs/")
		return ok && strings.Contains(string(pkg), "dst: /usr/share/doc/nmos-certs/docs/\n") && fileExists("../../docs/"+doc)
	}
	for _, line := range strings.Split(unit, "\n") {
		var refs []string
		if v, ok := strings.CutPrefix(line, "Documentation="); ok {
			refs = strings.Fields(v)
		}
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			refs = append(refs, "file:"+strings.Fields(v)[0])
		}
		if v, ok := strings.CutPrefix(line, "ExecStartPre="); ok {
			refs = append(refs, "file:"+strings.Fields(v)[0])
		}
		for _, r := range refs {
			var path string
			switch {
			case r == "man:nmos-certs(1)":
				path = "/usr/share/man/man1/nmos-certs.1.gz"
			case strings.HasPrefix(r, "file:"):
				path = strings.TrimPrefix(r, "file:")
			default:
				t.Errorf("the unit names %s, which nothing here checks", r)
				continue
			}
			if !shipped(path) {
				t.Errorf("the unit names %s, which the package does not ship", r)
			}
		}
	}
	if !strings.Contains(serveCommand().Description, "SIGHUP reloads") {
		t.Error("serve no longer says it reloads on SIGHUP")
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
