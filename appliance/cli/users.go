package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/nmos-certs/nmos-certs/ca"
	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/webroot/auth"
)

// withStore opens the store of --config (made by the appliance's first
// start or ca init), for the commands that touch accounts.
func withStore(c *cli.Context, fn func(ctx context.Context, st store.Store) error) error {
	return withCA(c, false, func(ctx context.Context, _ *ca.Authority, st store.Store) error { return fn(ctx, st) })
}

var passwordFileFlag = &cli.StringFlag{
	Name:  "password-file",
	Usage: "read the password from the first line of `FILE` (- for standard input); without it the password is asked on the terminal, twice, without echo",
}

// readPassword returns the new password of an account: from
// --password-file, or asked twice on the terminal.
func readPassword(c *cli.Context) (string, error) {
	var pw string
	if path := c.String("password-file"); path != "" {
		var r io.Reader = c.App.Reader
		if path != "-" {
			f, err := os.Open(path)
			if err != nil {
				return "", err
			}
			defer f.Close()
			r = f
		}
		line, err := bufio.NewReader(io.LimitReader(r, 4*auth.MaxPassword+2)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		pw = strings.TrimRight(line, "\r\n")
	} else {
		in, ok := c.App.Reader.(*os.File)
		if !ok || !term.IsTerminal(int(in.Fd())) {
			return "", usageError("no terminal to ask the password on: give --password-file FILE (- for standard input)")
		}
		ask := func(prompt string) (string, error) {
			fmt.Fprint(c.App.ErrWriter, prompt)
			b, err := term.ReadPassword(int(in.Fd()))
			fmt.Fprintln(c.App.ErrWriter)
			return string(b), err
		}
		var err error
		if pw, err = ask("New password: "); err != nil {
			return "", err
		}
		again, err := ask("Again: ")
		if err != nil {
			return "", err
		}
		if again != pw {
			return "", errors.New("the two passwords differ; nothing was changed")
		}
	}
	if err := auth.CheckPassword(pw); err != nil {
		return "", err
	}
	return pw, nil
}

// newPasswordHash reads a new password (readPassword) and hashes it.
func newPasswordHash(c *cli.Context) (string, error) {
	pw, err := readPassword(c)
	if err != nil {
		return "", err
	}
	return auth.Hash(pw, auth.Default)
}

func usersCommand() *cli.Command {
	userArg := func(c *cli.Context) (string, error) {
		if c.NArg() != 1 {
			return "", usageError("%s takes one account NAME", c.Command.Name)
		}
		name := c.Args().First()
		return name, auth.CheckUserName(name)
	}
	auditOf := func(action, target, detail string) *store.AuditRecord {
		return &store.AuditRecord{At: time.Now(), Actor: operator(), Remote: "cli", Action: action, Target: target, Detail: detail}
	}
	lastAdmin := func(err error) error {
		if errors.Is(err, store.ErrLastAdmin) {
			return fmt.Errorf("%w: add another admin first (nmos-certs users add NAME --role admin)", err)
		}
		return err
	}
	// onUser is the action of a command on one account NAME: fn does the
	// change and returns what to print.
	onUser := func(fn func(ctx context.Context, st store.Store, name string) (string, error)) cli.ActionFunc {
		return func(c *cli.Context) error {
			name, err := userArg(c)
			if err != nil {
				return err
			}
			return withStore(c, func(ctx context.Context, st store.Store) error {
				msg, err := fn(ctx, st, name)
				if err != nil {
					return err
				}
				fmt.Fprintln(c.App.Writer, msg)
				return nil
			})
		}
	}
	return &cli.Command{
		Name:  "users",
		Usage: "manage the operator accounts of the web UI (roles: viewer, operator, admin)",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "create an account",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{configFlag, passwordFileFlag,
					&cli.StringFlag{Name: "role", Value: "viewer", Usage: "`ROLE`: viewer (reads), operator (also approves, denies, revokes, releases names) or admin (also the CA, accounts and reload)"}},
				Action: func(c *cli.Context) error {
					name, err := userArg(c)
					if err != nil {
						return err
					}
					role, err := auth.ParseRole(c.String("role"))
					if err != nil {
						return usageError("%v", err)
					}
					h, err := newPasswordHash(c)
					if err != nil {
						return err
					}
					return withStore(c, func(ctx context.Context, st store.Store) error {
						u := &store.User{Name: name, Role: string(role), PasswordHash: h, CreatedAt: time.Now()}
						if err := st.PutUser(ctx, u, auditOf("user_added", name, "role "+string(role))); err != nil {
							return err
						}
						fmt.Fprintf(c.App.Writer, "account %s added with role %s\n", name, role)
						return nil
					})
				},
			},
			{
				Name:  "list",
				Usage: "list the accounts, their roles, last sign-in and lockout",
				Flags: []cli.Flag{configFlag},
				Action: func(c *cli.Context) error {
					return withStore(c, func(ctx context.Context, st store.Store) error {
						users, err := st.Users(ctx)
						if err != nil {
							return err
						}
						if len(users) == 0 {
							fmt.Fprintln(c.App.Writer, "no accounts: the web UI answers loopback clients only; add the first admin with: nmos-certs users add NAME --role admin")
							return nil
						}
						tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
						fmt.Fprintln(tw, "NAME\tROLE\tCREATED\tLAST SIGN-IN\tLOCKED UNTIL")
						for _, u := range users {
							last, locked := "never", "-"
							if !u.LastLogin.IsZero() {
								last = u.LastLogin.Format(time.RFC3339)
							}
							if u.LockedUntil.After(time.Now()) {
								locked = u.LockedUntil.Format(time.RFC3339)
							}
							fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Name, u.Role, u.CreatedAt.Format(time.DateOnly), last, locked)
						}
						return tw.Flush()
					})
				},
			},
			{
				Name:      "remove",
				Usage:     "remove an account and end its sessions",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{configFlag},
				Action: onUser(func(ctx context.Context, st store.Store, name string) (string, error) {
					if err := st.DeleteUser(ctx, name, auditOf("user_removed", name, "")); err != nil {
						return "", lastAdmin(err)
					}
					return "account " + name + " removed", nil
				}),
			},
			{
				Name:      "passwd",
				Usage:     "set an account's password (its sessions end); also lifts a lockout",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{configFlag, passwordFileFlag},
				Action: func(c *cli.Context) error {
					name, err := userArg(c)
					if err != nil {
						return err
					}
					h, err := newPasswordHash(c)
					if err != nil {
						return err
					}
					return withStore(c, func(ctx context.Context, st store.Store) error {
						if _, err := st.UpdateUser(ctx, name, store.UserUpdate{PasswordHash: h, Unlock: true}, time.Now(), auditOf("user_password", name, "")); err != nil {
							return err
						}
						fmt.Fprintf(c.App.Writer, "password of %s changed; its sessions ended\n", name)
						return nil
					})
				},
			},
			{
				Name:      "role",
				Usage:     "change an account's role (its sessions end)",
				ArgsUsage: "NAME ROLE",
				Flags:     []cli.Flag{configFlag},
				Action: func(c *cli.Context) error {
					if c.NArg() != 2 {
						return usageError("role takes an account NAME and a ROLE")
					}
					name := c.Args().Get(0)
					role, err := auth.ParseRole(c.Args().Get(1))
					if err != nil {
						return usageError("%v", err)
					}
					return withStore(c, func(ctx context.Context, st store.Store) error {
						if _, err := st.UpdateUser(ctx, name, store.UserUpdate{Role: string(role)}, time.Now(), auditOf("user_role", name, "role "+string(role))); err != nil {
							return lastAdmin(err)
						}
						fmt.Fprintf(c.App.Writer, "%s is now %s\n", name, role)
						return nil
					})
				},
			},
			{
				Name:      "unlock",
				Usage:     "lift the lockout of an account that failed to sign in too often",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{configFlag},
				Action: onUser(func(ctx context.Context, st store.Store, name string) (string, error) {
					if _, err := st.UpdateUser(ctx, name, store.UserUpdate{Unlock: true}, time.Now(), auditOf("user_unlocked", name, "")); err != nil {
						return "", err
					}
					return name + " unlocked", nil
				}),
			},
		},
	}
}
