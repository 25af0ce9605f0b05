package parse

import (
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// The words partners' mail clients write, per language, in one table:
// the names of a reply or forward header block, the attribution line above
// a quoted reply, the marker lines of Outlook and Gmail, the subject
// prefixes of a forward, and the names and values of a request's fields.
// docs/parsing.md lists them; every regular expression below is built from
// this table once, so a language is added here and nowhere else.
type language struct {
	code string
	// Header block names (Outlook desktop, web and mobile; Gmail's and
	// Thunderbird's forward blocks; Apple Mail's).
	from, date, to, subject []string
	// wrote are the words of an attribution line ("On …, Jane wrote:"):
	// a line ending in a colon that holds one of them starts quoted history.
	wrote []string
	// original marks a reply's history ("-----Original Message-----");
	// forwarded marks a forward ("Forwarded message", "Begin forwarded
	// message:").
	original, forwarded []string
	// fwdSubject are the subject prefixes of a forward ("Fwd:", "WG:").
	fwdSubject []string
	// Field names, and the words for the two environments.
	envName, scopesName, labelName []string
	production, sandbox            []string
}

var languages = []language{
	{code: "en",
		from: []string{"from"}, date: []string{"sent", "date"}, to: []string{"to", "cc", "bcc", "reply-to"}, subject: []string{"subject"},
		wrote:      []string{"wrote"},
		original:   []string{"original message"},
		forwarded:  []string{"forwarded message", "begin forwarded message"},
		fwdSubject: []string{"fwd", "fw"},
		envName:    []string{"environment", "environments", "env", "api environment"},
		scopesName: []string{"scopes", "scope", "permissions", "permission", "permission scopes", "api scopes", "key scopes"},
		labelName:  []string{"label", "labels", "key label", "key name"},
		production: []string{"production", "prod", "live"},
		sandbox:    []string{"sandbox", "test", "testing"}},
	{code: "de",
		from: []string{"von"}, date: []string{"gesendet", "datum"}, to: []string{"an", "kopie"}, subject: []string{"betreff"},
		wrote:      []string{"schrieb"},
		original:   []string{"ursprüngliche nachricht", "originalnachricht"},
		forwarded:  []string{"weitergeleitete nachricht", "anfang der weitergeleiteten nachricht"},
		fwdSubject: []string{"wg"},
		envName:    []string{"umgebung"},
		scopesName: []string{"berechtigungen", "berechtigung", "bereiche", "rechte"},
		labelName:  []string{"bezeichnung", "schlüsselname", "name des schlüssels"},
		production: []string{"produktion", "produktiv", "produktivumgebung", "live-umgebung"},
		sandbox:    []string{"testumgebung", "sandkasten"}},
	{code: "fr",
		from: []string{"de"}, date: []string{"envoyé", "date"}, to: []string{"à", "a", "cc"}, subject: []string{"objet"},
		wrote:      []string{"a écrit"},
		original:   []string{"message d'origine", "message original"},
		forwarded:  []string{"message transféré", "début du message réexpédié", "début du message transféré"},
		fwdSubject: []string{"tr", "réf"},
		envName:    []string{"environnement"},
		scopesName: []string{"portées", "portée", "autorisations", "droits", "périmètres"},
		labelName:  []string{"libellé", "étiquette", "nom de la clé"},
		production: []string{"production", "prod"},
		sandbox:    []string{"bac à sable", "test", "essai"}},
	{code: "es",
		from: []string{"de"}, date: []string{"enviado", "enviado el", "fecha"}, to: []string{"para", "cc"}, subject: []string{"asunto"},
		wrote:      []string{"escribió"},
		original:   []string{"mensaje original"},
		forwarded:  []string{"mensaje reenviado", "inicio del mensaje reenviado"},
		fwdSubject: []string{"rv", "reenv"},
		envName:    []string{"entorno", "ambiente"},
		scopesName: []string{"ámbitos", "ámbito", "alcances", "alcance", "permisos"},
		labelName:  []string{"etiqueta", "nombre de la clave"},
		production: []string{"producción", "produccion"},
		sandbox:    []string{"pruebas", "prueba", "entorno de pruebas"}},
	{code: "it",
		from: []string{"da"}, date: []string{"inviato", "data"}, to: []string{"a", "cc"}, subject: []string{"oggetto"},
		wrote:      []string{"ha scritto"},
		original:   []string{"messaggio originale"},
		forwarded:  []string{"messaggio inoltrato", "inizio messaggio inoltrato"},
		fwdSubject: []string{"i", "inoltra"},
		envName:    []string{"ambiente"},
		scopesName: []string{"ambiti", "ambito", "permessi", "autorizzazioni"},
		labelName:  []string{"etichetta", "nome della chiave"},
		production: []string{"produzione"},
		sandbox:    []string{"prova", "collaudo"}},
	{code: "pt",
		from: []string{"de"}, date: []string{"enviada", "enviado", "enviada em", "data"}, to: []string{"para", "cc"}, subject: []string{"assunto"},
		wrote:      []string{"escreveu"},
		original:   []string{"mensagem original"},
		forwarded:  []string{"mensagem encaminhada", "início da mensagem reencaminhada", "mensagem reencaminhada"},
		fwdSubject: []string{"enc", "encaminhar"},
		envName:    []string{"ambiente"},
		scopesName: []string{"escopos", "escopo", "âmbitos", "permissões"},
		labelName:  []string{"rótulo", "etiqueta", "nome da chave"},
		production: []string{"produção", "producao"},
		sandbox:    []string{"testes", "teste"}},
	{code: "nl",
		from: []string{"van"}, date: []string{"verzonden", "datum"}, to: []string{"aan", "cc"}, subject: []string{"onderwerp"},
		wrote:      []string{"schreef", "het volgende geschreven"},
		original:   []string{"oorspronkelijk bericht", "origineel bericht"},
		forwarded:  []string{"doorgestuurd bericht", "begin doorgestuurd bericht"},
		fwdSubject: []string{"doorst"},
		envName:    []string{"omgeving"},
		scopesName: []string{"rechten", "bevoegdheden"},
		labelName:  []string{"naam van de sleutel"},
		production: []string{"productie"},
		sandbox:    []string{"testomgeving"}},
	{code: "pl",
		from: []string{"od"}, date: []string{"wysłano", "wysłane", "data"}, to: []string{"do", "dw", "kopia"}, subject: []string{"temat"},
		wrote:      []string{"napisał(a)", "napisał", "napisała", "wiadomość napisana przez"},
		original:   []string{"wiadomość oryginalna", "oryginalna wiadomość"},
		forwarded:  []string{"wiadomość przekazana dalej", "przekazana wiadomość"},
		fwdSubject: []string{"pd"},
		envName:    []string{"środowisko"},
		scopesName: []string{"zakresy", "zakres", "uprawnienia"},
		labelName:  []string{"etykieta", "nazwa klucza"},
		production: []string{"produkcja", "produkcyjne", "produkcyjny"},
		sandbox:    []string{"testowe", "testowy", "piaskownica"}},
	{code: "sv",
		from: []string{"från"}, date: []string{"skickat", "datum"}, to: []string{"till", "kopia"}, subject: []string{"ämne"},
		wrote:      []string{"skrev"},
		original:   []string{"ursprungligt meddelande", "originalmeddelande"},
		forwarded:  []string{"vidarebefordrat meddelande"},
		fwdSubject: []string{"vb"},
		envName:    []string{"miljö"},
		scopesName: []string{"behörigheter", "omfång"},
		labelName:  []string{"etikett", "benämning"},
		production: []string{"produktion"},
		sandbox:    []string{"testmiljö"}},
	{code: "da",
		from: []string{"fra"}, date: []string{"sendt", "dato"}, to: []string{"til", "cc"}, subject: []string{"emne"},
		wrote:      []string{"skrev"},
		original:   []string{"oprindelig meddelelse", "original meddelelse"},
		forwarded:  []string{"videresendt meddelelse", "videresendt besked"},
		fwdSubject: []string{"vs", "vidr"},
		envName:    []string{"miljø"},
		scopesName: []string{"rettigheder", "tilladelser"},
		labelName:  []string{"etiket", "mærkat"},
		production: []string{"produktion"},
		sandbox:    []string{"testmiljø"}},
	{code: "no",
		from: []string{"fra"}, date: []string{"sendt", "dato"}, to: []string{"til", "kopi"}, subject: []string{"emne"},
		wrote:      []string{"skrev"},
		original:   []string{"opprinnelig melding", "original melding"},
		forwarded:  []string{"videresendt melding"},
		fwdSubject: []string{"vs", "videresend"},
		envName:    []string{"miljø"},
		scopesName: []string{"tillatelser", "rettigheter", "omfang"},
		labelName:  []string{"etikett", "navn på nøkkelen"},
		production: []string{"produksjon"},
		sandbox:    []string{"testmiljø"}},
	{code: "fi",
		from: []string{"lähettäjä"}, date: []string{"lähetetty", "päivämäärä"}, to: []string{"vastaanottaja", "kopio"}, subject: []string{"aihe"},
		wrote:      []string{"kirjoitti"},
		original:   []string{"alkuperäinen viesti"},
		forwarded:  []string{"välitetty viesti", "edelleenlähetetty viesti"},
		fwdSubject: []string{"vl"},
		envName:    []string{"ympäristö"},
		scopesName: []string{"käyttöoikeudet", "oikeudet", "laajuudet"},
		labelName:  []string{"nimike", "tunniste", "avaimen nimi"},
		production: []string{"tuotanto", "tuotantoympäristö"},
		sandbox:    []string{"testi", "testiympäristö", "hiekkalaatikko"}},
	{code: "cs",
		from: []string{"od"}, date: []string{"odesláno", "datum"}, to: []string{"komu", "kopie"}, subject: []string{"předmět"},
		wrote:      []string{"napsal(a)", "napsal", "napsala"},
		original:   []string{"původní zpráva", "původní e-mail"},
		forwarded:  []string{"přeposlaná zpráva", "přeposlaný e-mail"},
		fwdSubject: []string{"fw", "přep"},
		envName:    []string{"prostředí"},
		scopesName: []string{"oprávnění", "rozsahy", "rozsah"},
		labelName:  []string{"štítek", "označení", "název klíče"},
		production: []string{"produkce", "produkční", "ostré"},
		sandbox:    []string{"testovací", "testovací prostředí"}},
	{code: "ja",
		from: []string{"差出人", "送信者"}, date: []string{"送信日時", "日付"}, to: []string{"宛先", "cc", "ｃｃ"}, subject: []string{"件名"},
		wrote:      []string{"書きました", "のメール"},
		original:   []string{"元のメッセージ", "オリジナル メッセージ"},
		forwarded:  []string{"転送されたメッセージ", "転送メッセージ"},
		fwdSubject: []string{"転送"},
		envName:    []string{"環境"},
		scopesName: []string{"スコープ", "権限"},
		labelName:  []string{"ラベル", "キー名"},
		production: []string{"本番", "本番環境"},
		sandbox:    []string{"サンドボックス", "テスト", "テスト環境"}},
	{code: "zh",
		from: []string{"发件人", "寄件者", "發件人"}, date: []string{"发送时间", "日期", "寄件日期", "發送時間"}, to: []string{"收件人", "收件者", "抄送", "副本"}, subject: []string{"主题", "主旨", "主題"},
		wrote:      []string{"写道", "寫道"},
		original:   []string{"原始邮件", "原始郵件"},
		forwarded:  []string{"转发的邮件", "轉寄的郵件", "转发邮件"},
		fwdSubject: []string{"转发", "轉寄"},
		envName:    []string{"环境", "環境"},
		scopesName: []string{"范围", "权限", "作用域", "範圍", "權限"},
		labelName:  []string{"标签", "標籤", "名称"},
		production: []string{"生产", "生产环境", "正式", "正式环境", "生產"},
		sandbox:    []string{"沙箱", "测试", "测试环境", "沙盒", "測試"}},
}

// Words in every language at once, lower-case, and the expressions built
// from them.
var (
	headerWords  = map[string]string{} // name → "from", "date", "to" or "subject"
	forwardMarks = map[string]bool{}   // the marker lines of a forward
	historyMarks = map[string]bool{}   // the marker lines of a reply or a forward
	fieldWords   = map[string]field{}  // field name → field
	// fieldNames are the fields' names by their first letter, lower-case,
	// longest first.
	fieldNames = map[rune][]string{}
	envWords   = map[string]string{} // environment word → "production" or "sandbox"

	// wroteRE is an attribution line: it ends in a colon and holds a
	// "wrote" word of some language.
	wroteRE *regexp.Regexp
	// fwdSubjRE is a forward's subject prefix.
	fwdSubjRE *regexp.Regexp
	// fieldSepRE is what follows a field's name on a field line: optional
	// emphasis, a separator, the value.
	fieldSepRE = regexp.MustCompile(`^\s*[*_]*\s*(?:[:=|：\t]|\s[-–—]\s|[–—]|\s{2,})\s*[*_]*\s*(.*?)\s*[*_]*\s*$`)
)

func init() {
	var wrote, subj, fields []string
	for _, l := range languages {
		for kind, ws := range map[string][]string{"from": l.from, "date": l.date, "to": l.to, "subject": l.subject} {
			for _, w := range ws {
				headerWords[w] = kind
			}
		}
		wrote = append(wrote, l.wrote...)
		for _, w := range l.original {
			historyMarks[w] = true
		}
		for _, w := range l.forwarded {
			forwardMarks[w] = true
			historyMarks[w] = true
		}
		subj = append(subj, l.fwdSubject...)
		for f, ws := range map[field][]string{fieldEnv: l.envName, fieldScopes: l.scopesName, fieldLabel: l.labelName} {
			for _, w := range ws {
				fieldWords[w] = f
				fields = append(fields, w)

			}
		}
		for _, w := range l.production {
			envWords[w] = "production"
		}
		for _, w := range l.sandbox {
			envWords[w] = "sandbox"
		}
	}
	envPhrases = buildEnvPhrases()
	wroteRE = regexp.MustCompile(`(?i)(?:^|[\s\p{P}\p{Han}\p{Hiragana}\p{Katakana}])(?:` + alternation(wrote) + `)(?:[\s\p{L}<>@.()\[\]'"_-]*)[:：]\s*$`)
	fwdSubjRE = regexp.MustCompile(`(?i)^\s*(` + alternation(subj) + `)\s*[:：]`)
	for _, w := range fields {
		r, _ := utf8.DecodeRuneInString(w)
		fieldNames[r] = append(fieldNames[r], w)
	}
	for r, ws := range fieldNames {
		slices.SortFunc(ws, func(a, b string) int { return len(b) - len(a) })
		fieldNames[r] = ws
	}
}

// bulletPattern is a list marker of any kind: "- ", "• ", "▪ ", "1. ",
// "2) ", "(3) ", "a) ".
const bulletPattern = `[-*•·+▪▫◦‣○●■□►▶➢➤✓✔–—]\s*|\(?\d{1,2}[.)]\s+|\(?[a-h]\)\s+`

// alternation joins words into a regular-expression alternation, longest
// first so that "enviado el" wins over "enviado".
func alternation(ws []string) string {
	ws = slices.Clone(ws)
	slices.SortFunc(ws, func(a, b string) int { return len(b) - len(a) })
	ws = slices.Compact(ws)
	q := make([]string, len(ws))
	for i, w := range ws {
		q[i] = strings.ReplaceAll(regexp.QuoteMeta(w), " ", `\s+`)
	}
	return strings.Join(q, "|")
}

// envPhrases turns the environment names of several words ("bac à sable",
// "entorno de pruebas") into one word before a value is split.
var envPhrases *strings.Replacer

func buildEnvPhrases() *strings.Replacer {
	var pairs []string
	var ws []string
	for w := range envWords {
		if strings.Contains(w, " ") {
			ws = append(ws, w)
		}
	}
	slices.SortFunc(ws, func(a, b string) int { return len(b) - len(a) })
	for _, w := range ws {
		pairs = append(pairs, w, envWords[w])
	}
	return strings.NewReplacer(pairs...)
}

// isFieldName reports whether a name is one of the fields' names in some
// language.
func isFieldName(name string) bool {
	_, ok := fieldWords[strings.Join(strings.Fields(strings.ToLower(strings.Trim(name, "*_ "))), " ")]
	return ok
}

// envWord maps an environment word of any language to "production" or
// "sandbox"; other words are returned as they are.
func envWord(w string) string {
	if e, ok := envWords[strings.ToLower(w)]; ok {
		return e
	}
	return w
}
