package queue_test

import (
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/buildmarkets/keydesk/queue"
)

// rawNC and rawJS reach under the typed methods, for the tests of NATS
// itself (inbox prefixes, stream configuration).
func rawNC(c *queue.Conn) *nats.Conn {
	nc, _ := c.Raw()
	return nc
}

func rawJS(c *queue.Conn) jetstream.JetStream {
	_, js := c.Raw()
	return js
}
