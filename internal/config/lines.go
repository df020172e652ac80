package config

import (
	"strings"
	"unicode/utf8"
)

// keyLines finds the line where each key of a properties text is defined (the last definition
// when a key repeats, as the last value wins). magiconair/properties does not report lines, so
// this scanner follows its lexer: comment lines start with '#' or '!', a key ends at unescaped
// whitespace, ':' or '=', a value continues on the next line after an odd trailing backslash,
// and escapes (\t, \uXXXX, ...) are decoded in keys. It never fails: on input the library
// rejects it simply stops. It reads each byte at most twice (see scanner.reads), so its time
// is linear in the text's length.
func keyLines(text string) map[string]int {
	lines, _ := scanKeyLines(text)
	return lines
}

// scanKeyLines is keyLines that also returns how many runes the scanner read.
func scanKeyLines(text string) (map[string]int, int) {
	lines := map[string]int{}
	text = strings.TrimPrefix(text, "\uFEFF") // the library drops a UTF-8 byte order mark too
	sc := &scanner{in: text, line: 1}
	keys := keyScan(sc, lines)
	return keys, sc.reads
}

func keyScan(sc *scanner, lines map[string]int) map[string]int {
	for {
		// Before a key: skip blank space and empty lines, read comments.
		r := sc.next()
		switch {
		case r == eofRune:
			return lines
		case r == '\n' || r == '\r' || r == ' ' || r == '\f' || r == '\t':
			continue
		case r == '#' || r == '!':
			for r = sc.next(); r != eofRune && r != '\n' && r != '\r'; r = sc.next() {
			}
			if r == eofRune {
				return lines
			}
			continue
		}
		sc.backup()
		line := sc.line
		var key strings.Builder
		for {
			r = sc.next()
			if r == '\\' {
				if !sc.escape(&key) {
					return lines
				}
				continue
			}
			if r == eofRune {
				break
			}
			if strings.ContainsRune(" \f\t\r\n:=", r) {
				sc.backup()
				break
			}
			key.WriteRune(r)
		}
		if key.Len() > 0 {
			lines[key.String()] = line
		}
		if r == eofRune {
			return lines
		}
		// Delimiter, then the value up to an unescaped end of line.
		sc.acceptRun(" \f\t")
		sc.accept(":=")
		sc.acceptRun(" \f\t")
		var discard strings.Builder
	value:
		for {
			r = sc.next()
			switch {
			case r == '\\':
				if p := sc.peek(); p == '\n' || p == '\r' {
					sc.next()
					sc.acceptRun(" \f\t")
				} else if !sc.escape(&discard) {
					return lines
				}
			case r == '\n' || r == '\r':
				break value
			case r == eofRune:
				return lines
			}
		}
	}
}

const eofRune = -1

// scanner reads runes from in and counts lines as it goes: counting them from the start of
// the text for each key made a large file take quadratic time.
type scanner struct {
	in         string
	pos, width int
	// line is the 1-based line of pos.
	line int
	// reads counts calls of next, for tests that the scan is linear.
	reads int
}

func (s *scanner) next() rune {
	s.reads++
	if s.pos >= len(s.in) {
		s.width = 0
		return eofRune
	}
	r, w := utf8.DecodeRuneInString(s.in[s.pos:])
	s.width = w
	s.pos += w
	if r == '\n' {
		s.line++
	}
	return r
}

// backup steps back over the rune next returned last; only once per next.
func (s *scanner) backup() {
	s.pos -= s.width
	if s.width == 1 && s.in[s.pos] == '\n' {
		s.line--
	}
	s.width = 0
}

func (s *scanner) peek() rune {
	r := s.next()
	s.backup()
	return r
}

func (s *scanner) accept(valid string) {
	if !strings.ContainsRune(valid, s.next()) {
		s.backup()
	}
}

func (s *scanner) acceptRun(valid string) {
	for strings.ContainsRune(valid, s.next()) {
	}
	s.backup()
}

// escape decodes the escape sequence after a backslash into b; false on a malformed one.
func (s *scanner) escape(b *strings.Builder) bool {
	r := s.next()
	switch r {
	case eofRune:
		return false
	case 'f':
		b.WriteRune('\f')
	case 'n':
		b.WriteRune('\n')
	case 'r':
		b.WriteRune('\r')
	case 't':
		b.WriteRune('\t')
	case 'u':
		var n rune
		for i := 0; i < 4; i++ {
			d := s.next()
			switch {
			case d >= '0' && d <= '9':
				n = n*16 + d - '0'
			case d >= 'a' && d <= 'f':
				n = n*16 + d - 'a' + 10
			case d >= 'A' && d <= 'F':
				n = n*16 + d - 'A' + 10
			default:
				return false
			}
		}
		b.WriteRune(n)
	default:
		b.WriteRune(r)
	}
	return true
}
