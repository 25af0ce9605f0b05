package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"

	"github.com/buildmarkets/keydesk/review/users"
)

func cmdUsers(_ context.Context, args []string) error {
	if len(args) == 0 || args[0] != "add" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintln(os.Stdout, "usage: keydesk users add NAME --role viewer|approver|admin [--person EMAIL] [--write users.yaml [--owner USER[:GROUP]]]")
			return nil
		}
		return errUsage
	}
	return runUsersAdd(os.Stdout, args[1:])
}

func runUsersAdd(stdout io.Writer, args []string) error {
	fs := newFlags("users add", "NAME --role viewer|approver|admin [--person EMAIL] [--write users.yaml [--owner USER[:GROUP]]]",
		"Generate a password (for the web UI) and an API token (for the CLI and scripts) for a new staff\n"+
			"member, print both once, and print the users.yaml entry holding only their hashes. With --write,\n"+
			"the entry is added to that file too (the review role picks the change up within seconds).\n"+
			"The file is replaced whole (a new file, then a rename): it keeps its owner, group and mode, so\n"+
			"that root running this leaves a file the service user still reads; a new file takes the owner\n"+
			"and group of its directory, mode 0640; --owner sets them.\n"+
			"Hand the password and token over through a channel you trust; keydesk cannot show them again.")
	role := fs.String("role", "", "viewer (reads), approver (approves, rejects, corrects, cancels) or admin (also runs batches)")
	write := fs.String("write", "", "add the entry to this users.yaml (created if missing)")
	ownerFlag := fs.String("owner", "", "with --write: give the file to `USER[:GROUP]` (default: as it was, or as its directory)")
	person := fs.String("person", "", "tie the account to the person with this `EMAIL` at the identity provider: under single sign-on, four eyes counts its token as that person")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *role == "" || *ownerFlag != "" && *write == "" {
		return errUsage
	}
	var owner *fileOwner
	if *ownerFlag != "" {
		o, err := lookupOwner(*ownerFlag)
		if err != nil {
			return fmt.Errorf("--owner: %w", err)
		}
		owner = o
	}
	name := fs.Arg(0)
	r := users.Role(*role)
	if !r.Valid() {
		return fmt.Errorf("--role %q: use viewer, approver or admin", *role)
	}
	u, password, token, err := users.NewAccount(name, r)
	if err != nil {
		return err
	}
	u.Person = *person
	// Validate the entry as the server will.
	if _, err := users.Parse("entry", []byte("users:\n"+indentLines(users.Entry(u), "  "))); err != nil {
		return err
	}
	if *write != "" {
		if err := appendUser(*write, u, owner); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "Staff member %s (%s). Shown once: keydesk keeps only hashes.\n\n", name, r)
	fmt.Fprintf(stdout, "  password (web UI):      %s\n", password)
	fmt.Fprintf(stdout, "  API token (CLI, API):   %s\n\n", token)
	if *write != "" {
		fmt.Fprintf(stdout, "Added to %s:\n\n", *write)
	} else {
		fmt.Fprintf(stdout, "Add this entry under users: in users.yaml:\n\n")
	}
	fmt.Fprint(stdout, indentLines(users.Entry(u), "  "))
	fmt.Fprintf(stdout, "\nThe CLI reads the token from KEYDESK_TOKEN (and the server from KEYDESK_URL).\n")
	return nil
}

func indentLines(s, pad string) string {
	var b bytes.Buffer
	for _, l := range bytes.SplitAfter([]byte(s), []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			b.WriteString(pad)
		}
		b.Write(l)
	}
	return b.String()
}

// appendUser adds u to a users file, keeping its comments, refusing a
// name already present and a file that would not load afterwards. The
// file is given owner, or keeps its own (usersFileOwner).
func appendUser(path string, u users.User, owner *fileOwner) error {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var doc yaml.Node
	if len(bytes.TrimSpace(data)) > 0 {
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("%s: the top level must be a mapping holding a users list", path)
	}
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "users" {
			list = root.Content[i+1]
		}
	}
	if list == nil {
		list = &yaml.Node{Kind: yaml.SequenceNode}
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "users"}, list)
	}
	if list.Kind != yaml.SequenceNode {
		if list.Kind == yaml.ScalarNode && list.Value == "" {
			list.Kind, list.Tag = yaml.SequenceNode, ""
		} else {
			return fmt.Errorf("%s: users: is not a list", path)
		}
	}
	var entry yaml.Node
	if err := entry.Encode(u); err != nil {
		return err
	}
	list.Content = append(list.Content, &entry)
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	if _, err := users.Parse(path, out.Bytes()); err != nil {
		return err
	}
	own, mode, err := usersFileOwner(path, owner)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, out.Bytes(), mode, own)
}

// usersFileOwner is who a rewritten users file belongs to, and its mode:
// an existing file keeps its mode and its owner (or is given explicit);
// a new one is mode 0640 (the group, the service's in the documented
// layout, reads it) and belongs to explicit or, when run as root, to the
// owner and group of its directory. Without this, root adding a user
// would leave a root-owned file the service user cannot read.
func usersFileOwner(path string, explicit *fileOwner) (*fileOwner, os.FileMode, error) {
	own, mode, err := statOwner(path)
	switch {
	case err == nil:
		if explicit != nil {
			own = explicit
		}
		return own, mode, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, 0, err
	case explicit != nil:
		return explicit, 0o640, nil
	case os.Geteuid() != 0:
		// Only root can give a file away: it is the caller's, as any
		// file they make.
		return nil, 0o640, nil
	}
	own, _, err = statOwner(filepath.Dir(path))
	if err != nil {
		return nil, 0, err
	}
	return own, 0o640, nil
}
