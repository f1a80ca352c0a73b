package cli

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// tourCommands returns the commands of the README's tour, one a line
// (continued lines joined), each with whether the README says it is
// refused ("# refused" at its end).
func tourCommands(t *testing.T) (cmds []string, refused []bool) {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "## A two-minute tour")
	if i < 0 {
		t.Fatal("README.md has no tour")
	}
	s = s[i:]
	start := strings.Index(s, "```sh\n")
	end := strings.Index(s[start+6:], "```")
	if start < 0 || end < 0 {
		t.Fatal("the tour has no sh block")
	}
	sc := bufio.NewScanner(strings.NewReader(s[start+6 : start+6+end]))
	var cur string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		cur += line
		cmd, comment, _ := strings.Cut(cur, "    # ")
		cmds = append(cmds, strings.TrimSpace(cmd))
		refused = append(refused, strings.HasPrefix(comment, "refused"))
		cur = ""
	}
	return cmds, refused
}

// TestReadmeTour runs the README's two-minute tour as written, against
// the appliance serving its embedded default (what make run starts), in
// a temporary directory: every command succeeds but the ones the README
// says are refused, which fail with their reason. SERIAL is the
// certificate the tour issued.
func TestReadmeTour(t *testing.T) {
	for _, tool := range []string{"openssl", "curl", "dig"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: the README's tour uses it (.ci/run installs it)", tool)
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "nmos-certs")
	if out, err := exec.Command("go", "build", "-o", bin, "../..").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serve := exec.CommandContext(ctx, bin, "serve")
	serve.Dir = dir
	var serveOut bytes.Buffer
	serve.Stdout, serve.Stderr = &serveOut, &serveOut
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		serve.Wait()
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:9153/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) || serve.ProcessState != nil {
			t.Fatalf("the appliance did not become ready (is another one using its ports?):\n%s", serveOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	cmds, refused := tourCommands(t)
	if len(cmds) < 10 {
		t.Fatalf("only %d commands found in the tour", len(cmds))
	}
	serialRE := regexp.MustCompile(`(?m)^([0-9a-f]{20,})\s+valid`)
	for i, cmd := range cmds {
		if strings.Contains(cmd, "SERIAL") {
			lc := exec.Command(bin, "certs", "list")
			lc.Dir = dir
			list, _ := lc.Output()
			m := serialRE.FindSubmatch(list)
			if m == nil {
				t.Fatalf("no valid certificate in the list for SERIAL:\n%s", list)
			}
			cmd = strings.ReplaceAll(cmd, "SERIAL", string(m[1]))
		}
		c := exec.Command("bash", "-o", "pipefail", "-c", cmd)
		c.Dir = dir
		out, err := c.CombinedOutput()
		switch {
		case refused[i] && err == nil:
			t.Errorf("%s: succeeded, the README says it is refused:\n%s", cmd, out)
		case refused[i] && !strings.Contains(string(out), "not issued"):
			t.Errorf("%s: failed without a reason:\n%s", cmd, out)
		case !refused[i] && err != nil:
			t.Errorf("%s: %v\n%s", cmd, err, out)
		case !refused[i] && len(bytes.TrimSpace(out)) == 0 && !strings.HasPrefix(cmd, "openssl req"):
			t.Errorf("%s: printed nothing", cmd)
		}
	}

	// docs/api.md's example, as one script, against the same appliance.
	b, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "## Try it")
	start := strings.Index(doc[i:], "```sh\n")
	end := strings.Index(doc[i+start+6:], "```")
	if i < 0 || start < 0 || end < 0 {
		t.Fatal("docs/api.md has no example")
	}
	script := doc[i+start+6 : i+start+6+end]
	c := exec.Command("bash", "-e", "-o", "pipefail", "-c", script)
	c.Dir = dir
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("docs/api.md's example: %v\n%s", err, out)
	}
	for _, want := range []string{"account alice added", "303\n", `"id":"ecdsa-root-1"`, `"action":"user_signed_in","target":"alice"`, "204\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("docs/api.md's example printed no %q:\n%s", want, out)
		}
	}
}
