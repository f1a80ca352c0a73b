// Command nmos-certs is the certificate appliance for NMOS networks.
package main

import "github.com/nmos-certs/nmos-certs/appliance/cli"

func main() { cli.Main() }
