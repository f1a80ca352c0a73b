package ca

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/store"
)

// crashChild, in the process TestRolloverCrashes starts, rolls over and
// kills itself (SIGKILL) at the step named in its environment.
func crashChild(t *testing.T, dir, op, at string) {
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "nmos-certs.db"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := Open(context.Background(), testOptions(t, dir, st), false)
	if err != nil {
		t.Fatal(err)
	}
	stepHook = func(s string) {
		if s == at {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Minute)
		}
	}
	switch op {
	case "root":
		_, err = a.RolloverRoot(context.Background(), ECDSA, 0)
	case "import":
		// The offline-root ceremony, the root key read from its file.
		req, _, rerr := a.RequestIntermediate(context.Background(), ECDSA)
		if rerr != nil {
			t.Fatal(rerr)
		}
		root, _ := a.CACertificate("ecdsa-root-1")
		key, kerr := ReadKey(filepath.Join(dir, "ca", "ecdsa-root-1.key"))
		if kerr != nil {
			t.Fatal(kerr)
		}
		cert, serr := SignIntermediate(req, root, key, 365*24*time.Hour, "", "", time.Now())
		if serr != nil {
			t.Fatal(serr)
		}
		_, err = a.ImportIntermediate(context.Background(), cert, "superseded")
	default:
		_, err = a.RolloverIntermediate(context.Background(), ECDSA, "test")
	}
	t.Fatalf("not killed at %q: %v", at, err)
}

// TestRolloverCrashes kills a process (SIGKILL) between each step of an
// intermediate and of a root rollover that leaves something on disk. The
// CA opens afterwards in the old state or the new one, never with a
// generation without its key; a key that was written but not recorded is
// set aside out of the key directory; and a rollover succeeds from there.
func TestRolloverCrashes(t *testing.T) {
	if dir := os.Getenv("NMOS_CERTS_CRASH_DIR"); dir != "" {
		crashChild(t, dir, os.Getenv("NMOS_CERTS_CRASH_OP"), os.Getenv("NMOS_CERTS_CRASH_STEP"))
		return
	}
	if testing.Short() {
		t.Skip("starts processes")
	}
	template := t.TempDir()
	st := openStore(t, template)
	if _, err := Open(context.Background(), testOptions(t, template, st), true); err != nil {
		t.Fatal(err)
	}
	st.Close()
	for _, c := range []struct {
		op, step string
		newState bool // the rollover is on record after the crash
	}{
		{"intermediate", "intermediate key written", false},
		{"intermediate", "intermediate recorded", true},
		{"root", "root rollover key 1 written", false},
		{"root", "root rollover key 2 written", false},
		{"root", "root rollover recorded", true},
		{"import", "imported intermediate key in place", false},
	} {
		t.Run(strings.ReplaceAll(c.step, " ", "_"), func(t *testing.T) {
			dir := t.TempDir()
			if out, err := exec.Command("cp", "-a", template+"/.", dir).CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			cmd := exec.Command(os.Args[0], "-test.run", "^TestRolloverCrashes$")
			cmd.Env = append(os.Environ(), "NMOS_CERTS_CRASH_DIR="+dir, "NMOS_CERTS_CRASH_OP="+c.op, "NMOS_CERTS_CRASH_STEP="+c.step)
			out, err := cmd.CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child not killed: %v\n%s", err, out)
			}
			// Keys written and not recorded are old enough to set aside.
			keys, _ := filepath.Glob(filepath.Join(dir, "ca", "*.key"))
			old := time.Now().Add(-time.Hour)
			for _, k := range keys {
				os.Chtimes(k, old, old)
			}
			st := openStore(t, dir)
			defer st.Close()
			a, err := Open(context.Background(), testOptions(t, dir, st), false)
			if err != nil {
				t.Fatalf("open after a crash at %q: %v", c.step, err)
			}
			gens := a.Generations()
			named := map[string]bool{}
			for _, g := range gens {
				if g.Role != RoleLink && !g.KeyHeld {
					t.Errorf("generation %s without its key", g.ID)
				}
				named[g.ID+".key"] = true
			}
			keys, _ = filepath.Glob(filepath.Join(dir, "ca", "*.key"))
			for _, k := range keys {
				if !named[filepath.Base(k)] {
					t.Errorf("key %s left without its record", k)
				}
			}
			rolled := len(gens) > 4
			if rolled != c.newState {
				t.Errorf("after a crash at %q: %d generations, the rollover on record: %v, want %v", c.step, len(gens), rolled, c.newState)
			}
			// And the appliance goes on: another rollover works.
			if c.op == "root" && !rolled {
				if _, err := a.RolloverRoot(context.Background(), ECDSA, 0); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := a.RolloverIntermediate(context.Background(), ECDSA, "test"); err != nil {
				t.Fatalf("rollover after the crash: %v", err)
			}
		})
	}
}
