package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of streams and buckets: part of the deployment interface (the NATS
// permissions in deploy/ name them). Never rename one.
const (
	BucketRequests   = "requests"   // one record per request, the source of truth
	BucketLocks      = "locks"      // leases
	BucketBatches    = "batches"    // batch records
	BucketDeliveries = "deliveries" // one record per sent message: sent once, even across crashes
	BucketIntake     = "intake"     // mailbox state (UIDVALIDITY) and per-message intake outcomes
	BucketSessions   = "sessions"   // review UI sessions
	BucketThreads    = "threads"    // each request's conversation, and the Message-ID index that finds it
	BucketKeys       = "keys"       // each partner account's keys per environment, as the batch role last listed them
	StreamAudit      = "AUDIT"
	StreamOutbox     = "OUTBOX"
	StreamDeadLetter = "DEADLETTER"
	ObjectMail       = "mail"

	// SubjectAudit prefixes audit subjects: audit.request.<id> (sourced by
	// the server from the requests bucket), audit.batch.<id>, audit.staff.<name>.
	SubjectAudit  = "audit"
	SubjectOutbox = "outbox"
)

// sentRetention is how long a record of a sent message, a dead letter and
// its original are kept. Outbox messages end within delivery.retry_for
// (48h by default) by being sent or dead-lettered, so a month covers every
// redelivery the sent-once records guard against, with room for support
// to look at dead letters and retry them.
const sentRetention = 30 * 24 * time.Hour

// DefaultAuditMaxBytes is the AUDIT stream's size limit unless
// nats.audit_max_bytes says otherwise: 1 GiB holds some three million
// typical events, decades of a support desk's work, and a flood of
// sign-in attempts is rolled up before it gets here. JetStream reserves
// the limit (times the replicas) from the account's file storage.
const DefaultAuditMaxBytes = 1 << 30

// requestsHistory is how many revisions of a request the bucket keeps (the
// most JetStream allows); the AUDIT stream keeps all of them for good.
const requestsHistory = 64

// leaderReads makes every read of a bucket go to its stream's leader. A
// bucket made by the client answers gets from any replica ("direct get"),
// and a replica a moment behind returns the revision before the last
// write: on a cluster a person's approval just after another's, or a
// batch's step just after a review, then failed its compare-and-set as if
// someone else had changed the record. Leader reads see every write
// acknowledged before them. It returns the bucket bound anew, so that the
// handle uses the stream's new setting.
func (c *Conn) leaderReads(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	s, err := c.js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return nil, err
	}
	if cfg := s.CachedInfo().Config; cfg.AllowDirect {
		cfg.AllowDirect = false
		if _, err := c.js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("reads from the leader only: %w", err)
		}
	}
	return c.js.KeyValue(ctx, bucket)
}

func (c *Conn) setup(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	r := c.opts.Replicas
	kvCfgs := kvConfigs(r)
	for _, cfg := range kvCfgs {
		var kv jetstream.KeyValue
		var err error
		if c.opts.SkipSetup {
			kv, err = c.js.KeyValue(ctx, cfg.Bucket)
		} else if kv, err = c.js.CreateOrUpdateKeyValue(ctx, cfg); err == nil {
			kv, err = c.leaderReads(ctx, cfg.Bucket)
		}
		if err != nil {
			return fmt.Errorf("queue: bucket %s: %w", cfg.Bucket, err)
		}
		c.kvs[cfg.Bucket] = kv
	}
	c.requests = NewBucket[keydesk.Request](c, BucketRequests)
	c.batches = NewBucket[keydesk.Batch](c, BucketBatches)
	c.threads = NewBucket[keydesk.ThreadEntry](c, BucketThreads)
	c.index = NewBucket[MessageIndex](c, BucketThreads)
	c.keys = NewBucket[keydesk.Inventory](c, BucketKeys)
	c.locks = c.kvs[BucketLocks]

	streams := streamConfigs(r, c.opts.AuditMaxBytes)
	if !c.opts.SkipSetup {
		for _, cfg := range streams {
			if _, err := c.js.CreateOrUpdateStream(ctx, cfg); err != nil {
				return fmt.Errorf("queue: stream %s: %w", cfg.Name, err)
			}
		}
	}
	var err error
	if c.opts.SkipSetup {
		c.mail, err = c.js.ObjectStore(ctx, ObjectMail)
	} else {
		c.mail, err = c.js.CreateOrUpdateObjectStore(ctx, mailStoreConfig(r))
	}
	if err != nil {
		return fmt.Errorf("queue: object store %s: %w", ObjectMail, err)
	}
	return nil
}

// kvConfigs are the buckets keydesk keeps, with r replicas each.
func kvConfigs(r int) []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{
		{Bucket: BucketRequests, Description: "keydesk requests", History: requestsHistory, Storage: jetstream.FileStorage, Replicas: r},
		{Bucket: BucketLocks, Description: "keydesk leases", History: 1, Storage: jetstream.FileStorage, Replicas: r, LimitMarkerTTL: time.Second},
		{Bucket: BucketBatches, Description: "keydesk batch records", History: 1, Storage: jetstream.FileStorage, Replicas: r},
		{Bucket: BucketDeliveries, Description: "keydesk sent messages", History: 1, Storage: jetstream.FileStorage, Replicas: r, TTL: sentRetention},
		{Bucket: BucketIntake, Description: "keydesk mailbox state", History: 1, Storage: jetstream.FileStorage, Replicas: r},
		{Bucket: BucketSessions, Description: "keydesk review sessions", History: 1, Storage: jetstream.FileStorage, Replicas: r, LimitMarkerTTL: time.Second},
		{Bucket: BucketThreads, Description: "keydesk request conversations", History: 1, Storage: jetstream.FileStorage, Replicas: r},
		{Bucket: BucketKeys, Description: "keydesk key inventory", History: 1, Storage: jetstream.FileStorage, Replicas: r},
	}
}

// streamConfigs are the streams keydesk keeps, with r replicas each and
// the audit stream bounded to auditMaxBytes.
func streamConfigs(r int, auditMaxBytes int64) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		{
			Name:        StreamAudit,
			Description: "keydesk audit trail: every request revision, batch and staff action",
			Subjects:    []string{SubjectAudit + ".batch.>", SubjectAudit + ".staff.>", SubjectAudit + ".system.>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    r,
			DenyDelete:  true,
			DenyPurge:   true,
			Duplicates:  time.Hour,
			// Bounded: full, the stream drops its oldest events (nothing can
			// delete or purge one by hand). The observer alerts support
			// well before that (AuditUsage).
			MaxBytes: auditMaxBytes,
			Discard:  jetstream.DiscardOld,
			Sources: []*jetstream.StreamSource{{
				Name: "KV_" + BucketRequests,
				SubjectTransforms: []jetstream.SubjectTransformConfig{{
					Source:      "$KV." + BucketRequests + ".>",
					Destination: SubjectAudit + ".request.>",
				}},
			}},
		},
		{
			Name:        StreamOutbox,
			Description: "keydesk outgoing mail (key deliveries hold ciphertext only)",
			Subjects:    []string{SubjectOutbox + ".>"},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    r,
			Duplicates:  time.Hour,
		},
		{
			Name:        StreamDeadLetter,
			Description: "keydesk outbox messages that ran out of deliveries or were terminated",
			Subjects: []string{
				"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + StreamOutbox + ".>",
				"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED." + StreamOutbox + ".>",
			},
			Retention: jetstream.LimitsPolicy,
			Storage:   jetstream.FileStorage,
			Replicas:  r,
			MaxAge:    sentRetention,
		},
	}
}

// mailStoreConfig is the object store of raw source mail.
func mailStoreConfig(r int) jetstream.ObjectStoreConfig {
	return jetstream.ObjectStoreConfig{
		Bucket: ObjectMail, Description: "keydesk raw source mail", Storage: jetstream.FileStorage, Replicas: r,
	}
}

// kvBucket returns one of the buckets named above; NewBucket gives it a
// type.
func (c *Conn) kvBucket(name string) jetstream.KeyValue {
	kv, ok := c.kvs[name]
	if !ok {
		panic("queue: no bucket " + name)
	}
	return kv
}

func isNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) ||
		errors.Is(err, jetstream.ErrObjectNotFound) || errors.Is(err, jetstream.ErrMsgNotFound)
}
