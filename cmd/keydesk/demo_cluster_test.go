package main

import (
	"bytes"
	"context"
	"github.com/buildmarkets/keydesk/internal/demo"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/internal/natstest"
	"github.com/buildmarkets/keydesk/internal/testenv"
)

// TestDemoOnClusterWithRoleUsers runs the demo's whole flow on a real
// 3-node cluster started from deploy/nats, each role connected as its own
// least-privilege NATS user: the permissions there are enough for the real
// roles, not just for probes.
func TestDemoOnClusterWithRoleUsers(t *testing.T) {
	testenv.Short(t)
	tlsDir := t.TempDir()
	if err := natstest.WriteCerts(tlsDir, natstest.CertOptions{}); err != nil {
		t.Fatal(err)
	}
	c := natstest.StartCluster(t, natstest.ClusterOptions{ConfigDir: "../../deploy/nats", TLSDir: tlsDir})
	var out bytes.Buffer
	sum, err := demo.Run(context.Background(), demoWiring(demo.Options{Once: true, Timeout: 90 * time.Second, Out: &out,
		Cluster: &demo.Cluster{URL: c.URLs(), TLSDir: tlsDir}}))
	if err != nil {
		t.Fatalf("demo on the cluster: %v\n%s", err, out.String())
	}
	if !sum.OK() {
		t.Fatalf("demo on the cluster found problems: %v\n%s", sum.Problems, out.String())
	}
	// Nothing a role did was refused, not even an attempt it survived.
	if v := c.LogLines("Violation"); len(v) > 0 {
		t.Errorf("the servers refused %d operations of the roles:\n%s", len(v), strings.Join(v, "\n"))
	}
	t.Logf("%s", out.String())
}
