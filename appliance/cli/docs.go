package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"
)

// The completion scripts ask the binary itself for the words that may
// follow (urfave/cli's --generate-bash-completion), so that they never
// fall behind the command tree.
const bashCompletion = `# bash completion for nmos-certs
_nmos_certs() {
	local cur words cword
	if declare -F _init_completion >/dev/null 2>&1; then
		_init_completion -n "=:" || return
	else
		COMPREPLY=()
		cur="${COMP_WORDS[COMP_CWORD]}"
		words=("${COMP_WORDS[@]}")
		cword=$COMP_CWORD
	fi
	local -a ask=("${words[@]:0:$cword}")
	[[ $cur == -* ]] && ask+=("$cur")
	local IFS=$'\n'
	COMPREPLY=($(compgen -W "$("${ask[@]}" --generate-bash-completion 2>/dev/null)" -- "$cur"))
}
complete -o bashdefault -o default -F _nmos_certs nmos-certs
`

const zshCompletion = `#compdef nmos-certs
# zsh completion for nmos-certs
_nmos_certs() {
	local -a ask opts
	ask=("${words[@]:0:$((CURRENT-1))}")
	[[ ${words[CURRENT]} == -* ]] && ask+=("${words[CURRENT]}")
	opts=("${(@f)$(${ask[@]} --generate-bash-completion 2>/dev/null)}")
	_describe 'nmos-certs' opts
}
compdef _nmos_certs nmos-certs
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script for bash or zsh",
		ArgsUsage: "bash|zsh",
		Description: "bash: nmos-certs completion bash > /etc/bash_completion.d/nmos-certs\n" +
			"(the Debian package installs it).",
		Action: func(c *cli.Context) error {
			var script string
			switch c.Args().First() {
			case "bash":
				script = bashCompletion
			case "zsh":
				script = zshCompletion
			default:
				return usageError("completion takes bash or zsh")
			}
			_, err := io.WriteString(c.App.Writer, script)
			return err
		},
	}
}

func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  "print the manual page (roff) made from this command tree",
		Hidden: true,
		Action: func(c *cli.Context) error {
			page, err := c.App.ToManWithSection(1)
			if err != nil {
				return err
			}
			page = manHeader(page, c.App.Version)
			_, err = io.WriteString(c.App.Writer, page)
			return err
		},
	}
}

// manHeader fills the .TH line urfave/cli writes without a date, source
// or manual name, which man(1) and lintian expect.
func manHeader(page, version string) string {
	lines := strings.Split(page, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".TH ") {
			lines[i] = fmt.Sprintf(`.TH "NMOS-CERTS" "1" "" "nmos-certs %s" "nmos-certs manual"`, version)
			break
		}
	}
	return strings.Join(lines, "\n")
}
