package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ProbeResult is what Probe found on a NATS server.
type ProbeResult struct {
	// Server is the URL connected to, without credentials.
	Server string
	// Streams is how many of keydesk's streams, buckets and stores exist.
	Streams int
	// Missing names those that do not exist.
	Missing []string
}

// Probe connects to o.URL as Open would (credentials, TLS, inbox prefix),
// asks JetStream for the account's info and looks for every stream,
// bucket and object store keydesk uses, creating nothing, then
// disconnects: `keydesk check --connect`. It needs a URL: the embedded
// server is no server to dial. A missing stream is an error, after which
// the result still says what was found.
func Probe(ctx context.Context, o Options) (*ProbeResult, error) {
	if o.URL == "" {
		return nil, errors.New("queue: probe: no nats url (the embedded server is reached in process only)")
	}
	if o.Name == "" {
		o.Name = "keydesk check"
	}
	nopts, err := o.natsOptions()
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		nopts = append(nopts, nats.Timeout(time.Until(dl)))
	}
	nc, err := nats.Connect(o.URL, nopts...)
	if err != nil {
		return nil, fmt.Errorf("queue: connect to nats %s: %w", redactURL(o.URL), err)
	}
	defer nc.Close()
	res := &ProbeResult{Server: nc.ConnectedUrlRedacted()}
	js, err := jetstream.New(nc)
	if err != nil {
		return res, fmt.Errorf("queue: jetstream: %w", err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		return res, fmt.Errorf("queue: jetstream account info: %w", err)
	}
	var names []string
	for _, kv := range kvConfigs(1) {
		names = append(names, "KV_"+kv.Bucket)
	}
	for _, s := range streamConfigs(1) {
		names = append(names, s.Name)
	}
	names = append(names, "OBJ_"+mailStoreConfig(1).Bucket)
	for _, name := range names {
		_, err := js.Stream(ctx, name)
		switch {
		case err == nil:
			res.Streams++
		case errors.Is(err, jetstream.ErrStreamNotFound):
			res.Missing = append(res.Missing, name)
		default:
			return res, fmt.Errorf("queue: stream %s: %w", name, err)
		}
	}
	if len(res.Missing) > 0 {
		return res, fmt.Errorf("queue: %d of keydesk's streams and buckets do not exist: %s", len(res.Missing), strings.Join(res.Missing, ", "))
	}
	return res, nil
}
