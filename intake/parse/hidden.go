package parse

import (
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// Text an HTML reader cannot see is not text: a request hidden in it would
// be one the partner never saw. An element is dropped when it is hidden
// for sure (display:none, visibility:hidden, mso-hide:all, font-size 0,
// opacity 0, transparent text or text the colour of its own background,
// a zero-size box that hides its overflow, the hidden attribute, a class
// or id that a <style> rule hides). It is dropped and the email held for a
// person when keydesk cannot be sure (white text, aria-hidden, off-screen
// or clipped boxes, a hiding style rule whose selector keydesk cannot
// place on elements).

// visibility is what keydesk makes of an element's look.
type visibility int

const (
	visible visibility = iota
	hiddenSure
	hiddenDoubt
)

// maxStyleBytes bounds the CSS of all <style> elements of a part read for
// hiding rules; past it, keydesk cannot be sure and says so.
const maxStyleBytes = 64 << 10

// hidingRules are the class and id selectors a <style> element hides.
type hidingRules struct {
	classes, ids map[string]bool
	doubt        bool // a hiding rule with a selector keydesk cannot place
	css          strings.Builder
	read         int // CSS bytes kept, all <style> elements together
}

var (
	cssComment   = regexp.MustCompile(`(?s)/\*.*?\*/`)
	cssEscape    = regexp.MustCompile(`\\([0-9a-fA-F]{1,6}) ?|\\(.)`)
	simpleSel    = regexp.MustCompile(`^[a-z0-9]*([.#])([a-z0-9_-]+)$`)
	zeroLength   = regexp.MustCompile(`^[-+]?0*\.?0+(px|pt|em|rem|%|ex|ch|vw|vh|cm|mm|in|pc)?$`)
	tinyLength   = regexp.MustCompile(`^0*\.\d+(px|pt)$|^1px$`)
	negativeFar  = regexp.MustCompile(`^-\d{3,}`)
	rgbZeroAlpha = regexp.MustCompile(`^(rgba|hsla)\(.*,0*\.?0+%?\)$|^#[0-9a-f]{6}00$|^#[0-9a-f]{3}0$`)
)

// normalizeCSS makes CSS comparable however it was spelled: escapes
// decoded, comments and white space removed, lower case, no !important.
func normalizeCSS(s string) string {
	if strings.Contains(s, `\`) {
		s = cssEscape.ReplaceAllStringFunc(s, func(e string) string {
			m := cssEscape.FindStringSubmatch(e)
			if m[1] != "" {
				if n, err := strconv.ParseUint(m[1], 16, 32); err == nil && n > 0 && n < 0x110000 {
					return string(rune(n))
				}
				return ""
			}
			return m[2]
		})
	}
	if strings.Contains(s, "/*") {
		s = cssComment.ReplaceAllString(s, "")
	}
	s = strings.ToLower(s)
	s = strings.ReplaceAll(s, "!important", "")
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f' {
			return -1
		}
		return r
	}, s)
}

// style is the declarations of a normalised style that decide whether
// its text shows, the last one of each winning.
type style struct {
	display, visibility, msoHide, fontSize, opacity, color, background string
	overflowHidden, zeroBox                                            bool
	textIndent, position, left, top, clip, clipPath, transform         string
}

// readStyle reads normalised "a:b;c:d" declarations, at most 200.
func readStyle(s string) style {
	var st style
	for n := 0; s != "" && n < 200; n++ {
		var decl string
		decl, s, _ = strings.Cut(s, ";")
		k, v, ok := strings.Cut(decl, ":")
		if !ok {
			continue
		}
		switch k {
		case "display":
			st.display = v
		case "visibility":
			st.visibility = v
		case "mso-hide":
			st.msoHide = v
		case "font-size":
			st.fontSize = v
		case "opacity":
			st.opacity = v
		case "color":
			st.color = v
		case "background-color", "background":
			st.background = v
		case "overflow", "overflow-x", "overflow-y":
			st.overflowHidden = st.overflowHidden || v == "hidden"
		case "width", "height", "max-width", "max-height", "line-height":
			st.zeroBox = st.zeroBox || zeroLength.MatchString(v)
		case "text-indent":
			st.textIndent = v
		case "position":
			st.position = v
		case "left":
			st.left = v
		case "top":
			st.top = v
		case "clip":
			st.clip = v
		case "clip-path":
			st.clipPath = v
		case "transform":
			st.transform = v
		}
	}
	return st
}

// styleVisibility judges normalised declarations.
func styleVisibility(s string) visibility {
	if s == "" {
		return visible
	}
	d := readStyle(s)
	switch {
	case d.display == "none", d.visibility == "hidden", d.visibility == "collapse", d.msoHide == "all":
		return hiddenSure
	case zeroLength.MatchString(d.fontSize), zeroLength.MatchString(d.opacity):
		return hiddenSure
	case d.color == "transparent" || rgbZeroAlpha.MatchString(d.color):
		return hiddenSure
	case d.color != "" && d.background != "" && sameColor(d.color, d.background):
		return hiddenSure
	case d.zeroBox && d.overflowHidden:
		return hiddenSure
	case d.color != "" && d.background == "" && isWhite(d.color):
		return hiddenDoubt // white on the white page most readers see
	case tinyLength.MatchString(d.fontSize),
		negativeFar.MatchString(d.textIndent),
		(d.position == "absolute" || d.position == "fixed") && (negativeFar.MatchString(d.left) || negativeFar.MatchString(d.top)),
		strings.HasPrefix(d.clip, "rect(0"), d.clipPath != "" && d.clipPath != "none",
		strings.HasPrefix(d.transform, "scale(0"):
		return hiddenDoubt
	}
	return visible
}

func isWhite(c string) bool {
	switch c {
	case "white", "#fff", "#ffffff", "#fefefe", "#fffffe", "rgb(255,255,255)", "rgba(255,255,255,1)", "hsl(0,0%,100%)":
		return true
	}
	return false
}

// sameColor compares two normalised colours, "#fff" and "white" alike.
func sameColor(a, b string) bool {
	canon := func(c string) string {
		if isWhite(c) {
			return "white"
		}
		if len(c) == 4 && c[0] == '#' {
			return "#" + string([]byte{c[1], c[1], c[2], c[2], c[3], c[3]})
		}
		return c
	}
	// background may be a shorthand holding the colour among other words
	return canon(a) == canon(b) || strings.Contains(b, a)
}

// addCSS keeps the text of a <style> element, within maxStyleBytes.
func (h *hidingRules) addCSS(s string) {
	if h.read+len(s) > maxStyleBytes {
		h.doubt = true // rules past the bound are not read
		return
	}
	h.read += len(s)
	h.css.WriteString(s)
}

// compile reads the hiding rules of the CSS kept so far.
func (h *hidingRules) compile() {
	css := normalizeCSS(h.css.String())
	h.css.Reset()
	if css == "" {
		return
	}
	if h.classes == nil {
		h.classes, h.ids = map[string]bool{}, map[string]bool{}
	}
	for n, rule := range strings.Split(css, "}") {
		if n >= 2000 {
			h.doubt = true
			return
		}
		sel, decl, ok := strings.Cut(rule, "{")
		if !ok {
			continue
		}
		if i := strings.LastIndex(decl, "{"); i >= 0 { // "@media x{.a{…"
			sel, decl = decl[:i], decl[i+1:]
		}
		if styleVisibility(decl) == visible {
			continue
		}
		for _, s := range strings.Split(sel, ",") {
			m := simpleSel.FindStringSubmatch(s)
			switch {
			case m == nil:
				h.doubt = true
			case m[1] == ".":
				h.classes[m[2]] = true
			default:
				h.ids[m[2]] = true
			}
		}
	}
}

// elementVisibility reads the tag's attributes: whether a reader can see
// its content.
func (h *hidingRules) elementVisibility(z *html.Tokenizer, a atom.Atom, hasAttr bool) visibility {
	v := visible
	worse := func(x visibility) {
		if x > v {
			v = x
		}
	}
	for hasAttr {
		var k, val []byte
		k, val, hasAttr = z.TagAttr()
		switch string(k) {
		case "hidden":
			worse(hiddenSure)
		case "style":
			worse(styleVisibility(normalizeCSS(string(val))))
		case "aria-hidden":
			if strings.EqualFold(strings.TrimSpace(string(val)), "true") {
				worse(hiddenDoubt)
			}
		case "class":
			for _, c := range strings.Fields(strings.ToLower(string(val))) {
				if h.classes[c] {
					worse(hiddenSure)
				}
			}
		case "id":
			if h.ids[strings.ToLower(strings.TrimSpace(string(val)))] {
				worse(hiddenSure)
			}
		case "color":
			if a == atom.Font {
				c := normalizeCSS(string(val))
				if c == "transparent" {
					worse(hiddenSure)
				} else if isWhite(c) {
					worse(hiddenDoubt)
				}
			}
		}
	}
	switch a {
	case atom.Script, atom.Style, atom.Head, atom.Title, atom.Template, atom.Noscript, atom.Iframe, atom.Object, atom.Svg, atom.Math, atom.Select, atom.Textarea:
		worse(hiddenSure)
	}
	return v
}
