package relay

import (
	"encoding/binary"
	"errors"
)

// question is what an answer must echo: the query's question section (name, type, class)
// and its id on the upstream side.
type question []byte

// parseQuery returns the question section of a packed query: RFC 1035 §4.1.2, the name at
// offset 12 as labels (it cannot be compressed: nothing precedes it to point at).
func parseQuery(query []byte) (question, error) {
	if len(query) < 12 || binary.BigEndian.Uint16(query[4:]) != 1 {
		return nil, errors.New("relay: the query must hold exactly one question")
	}
	end, ok := QuestionEnd(query)
	if !ok {
		return nil, errors.New("relay: malformed question")
	}
	return question(query[12:end]), nil
}

// QuestionEnd returns the offset just after the first question (name + type + class) of
// a message, if its name is made of labels only (no compression pointer).
func QuestionEnd(msg []byte) (int, bool) {
	i := 12
	for {
		if i >= len(msg) {
			return 0, false
		}
		l := int(msg[i])
		if l == 0 {
			i++
			break
		}
		if l&0xc0 != 0 { // a pointer or an extended label type: never in a question we accept
			return 0, false
		}
		i += 1 + l
	}
	if i+4 > len(msg) {
		return 0, false
	}
	return i + 4, true
}

// answers reports whether msg is an answer (QR set) with upstream id id to the question q:
// RFC 5452 §9.1 (id, question, and the socket it arrived on, which is connected to the
// destination). The name compares case-insensitively: RFC 1034 §3.1, and servers may
// echo the case they store. Length octets are below 64, so folding ASCII letters in the
// whole name is safe. A FORMERR without a question is an answer too: a server that could
// not parse the query cannot echo its question (RFC 1035 §4.1.1), and waiting for another
// answer would only turn its verdict into a timeout.
func answers(msg []byte, id uint16, q question) bool {
	if len(msg) < 12 || binary.BigEndian.Uint16(msg) != id || msg[2]&0x80 == 0 {
		return false
	}
	qdcount := binary.BigEndian.Uint16(msg[4:])
	if qdcount == 0 && msg[3]&0x0f == 1 {
		return true
	}
	if len(msg) < 12+len(q) || qdcount != 1 {
		return false
	}
	got := msg[12 : 12+len(q)]
	name := len(q) - 4
	for i := 0; i < name; i++ {
		if lower(got[i]) != lower(q[i]) {
			return false
		}
	}
	return string(got[name:]) == string(q[name:])
}

func lower(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}
