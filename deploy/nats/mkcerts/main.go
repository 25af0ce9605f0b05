// Command mkcerts makes the TLS material of keydesk's NATS cluster: a new
// CA, one server certificate shared by the nodes, and a client certificate
// per role whose e-mail address (intake@keydesk.internal...) names the
// role's NATS user in accounts.conf.
//
//	go run ./deploy/nats/mkcerts -out /etc/nats/tls -hosts nats-1,nats-2,nats-3
//
// Keep ca-key.pem offline once the certificates are made; give each role
// only its own <role>.pem and <role>-key.pem, and the nodes server*.pem.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk/internal/natstest"
)

func main() {
	out := flag.String("out", "tls", "directory to write the certificates into")
	hosts := flag.String("hosts", "nats-1,nats-2,nats-3", "comma-separated DNS names and IP addresses of the nodes")
	users := flag.String("users", strings.Join(natstest.Roles, ","), "comma-separated NATS users to make client certificates for")
	valid := flag.Duration("valid", 365*24*time.Hour, "how long the certificates are valid")
	flag.Parse()
	if err := natstest.WriteCerts(*out, natstest.CertOptions{
		Hosts: split(*hosts), Users: split(*users), Valid: *valid,
	}); err != nil {
		fmt.Fprintln(os.Stderr, "mkcerts:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote the CA, server and client certificates to %s\n", *out)
}

func split(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
