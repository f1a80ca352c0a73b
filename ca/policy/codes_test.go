package policy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestCodesComplete: Codes lists every Code constant of the package, so
// that each refusal reason has its metric series from the start.
func TestCodesComplete(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "policy.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var consts []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range vs.Names {
			if strings.HasPrefix(name.Name, "Code") && i < len(vs.Values) {
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, _ := strconv.Unquote(lit.Value)
					consts = append(consts, v)
				}
			}
		}
		return true
	})
	if len(consts) == 0 {
		t.Fatal("no Code constants found in policy.go")
	}
	slices.Sort(consts)
	got := slices.Clone(Codes)
	slices.Sort(got)
	if !slices.Equal(consts, got) {
		t.Fatalf("Codes = %v\nconstants = %v", got, consts)
	}
}
