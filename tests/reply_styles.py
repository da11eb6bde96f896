"""Staff replies to one of our notifications, written the way real mail clients write them, in ten languages.

``reply(style, notification, answer)`` returns the raw reply: the answer on top, then the client's
attribution line (or Outlook's header block) and the quoted notification, in the client's plain-text
form and, for clients that send one, its HTML form with that client's quote markup (Gmail's
``gmail_quote``, Apple Mail's ``blockquote type=cite``, Outlook's ``divRplyFwdMsg`` or its border-top
separator, Thunderbird's ``moz-cite-prefix``). tests/data/replies/ holds the committed corpus made from
these (``python3 tests/data/replies/make_corpus.py``); tests/test_quotes.py checks it.
"""

from __future__ import annotations

import email
import email.policy
import html
from email.message import EmailMessage
from typing import Callable

SUPPORT = "Open Atrium Support <support@openatrium.example>"
ADDR = "support@openatrium.example"
NAME = "Open Atrium Support"

# What each client writes above the quote, per language (the reply is to mail of Tue, Dec 1, 2026, 10:00).
GMAIL = {
    "en": f"On Tue, Dec 1, 2026 at 10:00 AM {NAME} <{ADDR}> wrote:",
    "de": f"Am Di., 1. Dez. 2026 um 10:00 Uhr schrieb {NAME} <{ADDR}>:",
    "fr": f"Le mar. 1 déc. 2026 à 10:00, {NAME} <{ADDR}> a écrit :",
    "es": f"El mar, 1 dic 2026 a las 10:00, {NAME} (<{ADDR}>) escribió:",
    "it": f"Il giorno mar 1 dic 2026 alle ore 10:00 {NAME} <{ADDR}> ha scritto:",
    "pt": f"Em ter., 1 de dez. de 2026 às 10:00, {NAME} <{ADDR}> escreveu:",
    "nl": f"Op di 1 dec 2026 om 10:00 schreef {NAME} <{ADDR}>:",
    "ru": f"вт, 1 дек. 2026 г. в 10:00, {NAME} <{ADDR}>:",
    "ja": f"2026年12月1日(火) 10:00 {NAME} <{ADDR}>:",
    "zh": f"{NAME} <{ADDR}> 于2026年12月1日周二 10:00写道：",
}
APPLE = {
    "en": f"On Dec 1, 2026, at 10:00, {NAME} <{ADDR}> wrote:",
    "de": f"Am 01.12.2026 um 10:00 schrieb {NAME} <{ADDR}>:",
    "fr": f"Le 1 déc. 2026 à 10:00, {NAME} <{ADDR}> a écrit :",
    "es": f"El 1 dic 2026, a las 10:00, {NAME} <{ADDR}> escribió:",
    "it": f"Il giorno 1 dic 2026, alle ore 10:00, {NAME} <{ADDR}> ha scritto:",
    "pt": f"Em 1 de dez. de 2026, à(s) 10:00, {NAME} <{ADDR}> escreveu:",
    "nl": f"Op 1 dec. 2026 om 10:00 heeft {NAME} <{ADDR}> het volgende geschreven:",
    "ru": f"1 дек. 2026 г., в 10:00, {NAME} <{ADDR}> написал(а):",
    "ja": f"2026/12/01 10:00、{NAME} <{ADDR}>のメール:",
    "zh": f"2026年12月1日 10:00，{NAME} <{ADDR}> 写道：",
}
# Outlook's header block: From, Sent, To, Subject.
OUTLOOK = {
    "en": ("From", "Sent", "To", "Subject", "Tuesday, December 1, 2026 10:00 AM"),
    "de": ("Von", "Gesendet", "An", "Betreff", "Dienstag, 1. Dezember 2026 10:00"),
    "fr": ("De\u00a0", "Envoyé\u00a0", "À\u00a0", "Objet\u00a0", "mardi 1 décembre 2026 10:00"),
    "es": ("De", "Enviado", "Para", "Asunto", "martes, 1 de diciembre de 2026 10:00"),
    "it": ("Da", "Inviato", "A", "Oggetto", "martedì 1 dicembre 2026 10:00"),
    "pt": ("De", "Enviado", "Para", "Assunto", "terça-feira, 1 de dezembro de 2026 10:00"),
    "nl": ("Van", "Verzonden", "Aan", "Onderwerp", "dinsdag 1 december 2026 10:00"),
    "ru": ("От", "Отправлено", "Кому", "Тема", "1 декабря 2026 г. 10:00"),
    "ja": ("差出人", "送信日時", "宛先", "件名", "2026年12月1日 10:00"),
    "zh": ("发件人", "发送时间", "收件人", "主题", "2026年12月1日 10:00"),
}
ANSWERS = {
    "en": "Hi Antonio, run `drush features-revert-all`, then clear the cache.\nThat fixes the dashboard.",
    "de": "Hallo Antonio, bitte `drush features-revert-all` ausführen und den Cache leeren.\nDann geht es wieder.",
    "fr": "Bonjour Antonio, lancez `drush features-revert-all`, puis videz le cache.\nÇa règle le problème.",
    "es": "Hola Antonio, ejecuta `drush features-revert-all` y vacía la caché.\nCon eso se arregla.",
    "it": "Ciao Antonio, esegui `drush features-revert-all` e svuota la cache.\nCosì si risolve.",
    "pt": "Olá Antonio, execute `drush features-revert-all` e limpe o cache.\nIsso resolve.",
    "nl": "Hoi Antonio, voer `drush features-revert-all` uit en leeg de cache.\nDan werkt het weer.",
    "ru": "Здравствуйте, Антонио! Выполните `drush features-revert-all` и очистите кэш.\nЭто всё исправит.",
    "ja": "アントニオさん、`drush features-revert-all` を実行してキャッシュをクリアしてください。\nこれで直ります。",
    "zh": "Antonio 你好，请运行 `drush features-revert-all` 并清除缓存。\n这样就好了。",
    "tr": "Merhaba Antonio, `drush features-revert-all` çalıştırın ve önbelleği temizleyin.\nBu düzeltir.",
}
LANGUAGES = tuple(GMAIL)


def _quoted(text: str) -> str:
    return "\n".join(("> " + line) if line else ">" for line in text.splitlines())


def _html_text(text: str) -> str:
    return "<br>\n".join(html.escape(line) for line in text.splitlines())


def _answer_html(answer: str) -> str:
    return "".join(f"<div>{html.escape(line)}</div>" for line in answer.splitlines())


def _wrap(line: str, width: int = 76) -> str:
    """Gmail wraps a long attribution line in its plain part."""
    if len(line) <= width:
        return line
    cut = line.rfind(" ", 0, width)
    return line[:cut] + "\n" + line[cut + 1:]


def gmail(lang: str, note: str, subject: str, answer: str, *, html_only: bool = False,
          attribution: str | None = None) -> tuple[str | None, str | None]:
    attr = attribution or GMAIL[lang]
    plain = f"{answer}\n\n{_wrap(attr)}\n\n{_quoted(note)}\n"
    markup = (f'<div dir="ltr">{_answer_html(answer)}</div><br><div class="gmail_quote gmail_quote_container">'
              f'<div dir="ltr" class="gmail_attr">{html.escape(attr)}<br></div><blockquote class="gmail_quote" '
              f'style="margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);padding-left:1ex">'
              f'{_html_text(note)}</blockquote></div>')
    return (None if html_only else plain), markup


def apple(lang: str, note: str, subject: str, answer: str) -> tuple[str | None, str | None]:
    attr = APPLE[lang]
    plain = f"{answer}\n\n{attr}\n\n{_quoted(note)}\n"
    markup = (f'<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"></head>'
              f'<body dir="auto">{_answer_html(answer)}<div dir="ltr"><br><blockquote type="cite">'
              f'<div dir="ltr">{html.escape(attr)}</div><br class="Apple-interchange-newline"><div dir="ltr">'
              f'{_html_text(note)}</div></blockquote></div></body></html>')
    return plain, markup


def outlook(lang: str, note: str, subject: str, answer: str, *, desktop: bool = False) -> tuple[str | None, str | None]:
    frm, sent, to, subj, when = OUTLOOK[lang]
    block = [(frm, SUPPORT), (sent, when), (to, "Young Hahn <young@openatrium.example>"), (subj, subject)]
    plain_block = "\n".join(f"{k}: {v}" for k, v in block)
    rule = "" if desktop else "________________________________\n"
    plain = f"{answer}\n\n{rule}{plain_block}\n\n{note}\n"
    head = "<br>\n".join(f"<b>{html.escape(k)}:</b> {html.escape(v)}" for k, v in block)
    if desktop:
        quote = (f'<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in">'
                 f'<p class="MsoNormal">{head}</p></div><p class="MsoNormal">{_html_text(note)}</p>')
    else:
        quote = (f'<div id="appendonsend"></div><hr style="display:inline-block;width:98%" tabindex="-1">'
                 f'<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" style="font-size:11pt" '
                 f'color="#000000">{head}</font><div>&nbsp;</div></div><div>{_html_text(note)}</div>')
    markup = (f'<html><head><style>p.MsoNormal{{margin:0}}</style></head><body>'
              f'<div class="elementToProof" style="font-family:Aptos,sans-serif">{_answer_html(answer)}</div>'
              f'{quote}</body></html>')
    return plain, markup


def thunderbird(lang: str, note: str, subject: str, answer: str) -> tuple[str | None, str | None]:
    attr = {"en": f"On 12/1/26 10:00 AM, {NAME} wrote:", "ru": f"01.12.2026 10:00, {NAME} пишет:",
            "de": f"Am 01.12.26 um 10:00 schrieb {NAME}:"}[lang]
    plain = f"{answer}\n\n{attr}\n{_quoted(note)}\n"
    markup = (f'<html><body><p>{_html_text(answer)}</p><div class="moz-cite-prefix">{html.escape(attr)}<br></div>'
              f'<blockquote type="cite" cite="mid:n1@openatrium.example"><pre class="moz-quote-pre" wrap="">'
              f'{html.escape(note)}</pre></blockquote></body></html>')
    return plain, markup


def android(lang: str, note: str, subject: str, answer: str) -> tuple[str | None, str | None]:
    """Android's stock mail (Samsung, AOSP): plain text, and in Russian its "пользователь … написал:" line."""
    if lang == "ru":
        attr = f'1 дек. 2026 г., 10:00 пользователь "{NAME}" <{ADDR}> написал:'
        return f"{answer}\n\n{attr}\n{_quoted(note)}\n", None
    return (f"{answer}\n\nSent from my Galaxy\n\n\n-------- Original message --------\nFrom: {SUPPORT}\n"
            f"Date: 12/1/26 10:00 (GMT-05:00)\nTo: young@openatrium.example\nSubject: {subject}\n\n{note}\n"), None


def unknown_language(lang: str, note: str, subject: str, answer: str) -> tuple[str | None, str | None]:
    """Turkish, which no pattern here knows: the plain part's quote marks and the line introducing them."""
    attr = f"1 Ara 2026 Sal, 10:00 tarihinde {NAME} <{ADDR}> şunu yazdı:"
    return f"{answer}\n\n{attr}\n\n{_quoted(note)}\n", None


def gmail_html_only(lang: str, note: str, subject: str, answer: str) -> tuple[str | None, str | None]:
    """An HTML-only reply in a language no pattern knows: only the gmail_quote marker says where the quote is."""
    return gmail(lang, note, subject, answer, html_only=True,
                 attribution=f"1 Ara 2026 Sal, 10:00 tarihinde {NAME} <{ADDR}> şunu yazdı:")


Builder = Callable[[str, str, str, str], "tuple[str | None, str | None]"]
STYLES: dict[str, tuple[Builder, tuple[str, ...]]] = {
    "gmail": (gmail, LANGUAGES),
    "apple": (apple, LANGUAGES),
    "outlook": (outlook, LANGUAGES),
    "outlook-desktop": (lambda *a: outlook(*a, desktop=True), ("en", "de", "fr", "ru", "ja")),
    "thunderbird": (thunderbird, ("en", "de", "ru")),
    "android": (android, ("en", "ru")),
    "plain-unknown-language": (unknown_language, ("tr",)),
    "gmail-html-only": (gmail_html_only, ("tr",)),
}


def cases() -> list[tuple[str, str]]:
    return [(style, lang) for style, (_, langs) in STYLES.items() for lang in langs]


def reply(style: str, lang: str, notification: bytes, *, frm: str = "Young Hahn <young@openatrium.example>",
          message_id: str = "<reply-1@openatrium.example>", date: str = "Tue, 01 Dec 2026 11:00:00 -0500") -> bytes:
    """A staff reply to ``notification`` (raw bytes of our mail) in ``style`` and ``lang``."""
    original = email.message_from_bytes(notification, policy=email.policy.default)
    note = original.get_body(("plain",)).get_content().rstrip("\n")
    subject = str(original["Subject"])
    build = STYLES[style][0]
    plain, markup = build(lang, note, subject, ANSWERS[lang])
    msg = EmailMessage()
    msg["From"] = frm
    msg["To"] = str(original["Reply-To"] or original["From"])
    msg["Subject"] = "Re: " + subject
    msg["Date"] = date
    msg["Message-ID"] = message_id
    msg["In-Reply-To"] = original["Message-ID"]
    msg["References"] = f"{original.get('References', '')} {original['Message-ID']}".strip()
    if plain is not None:
        msg.set_content(plain, charset="utf-8")
        if markup is not None:
            msg.add_alternative(markup, subtype="html", charset="utf-8")
    else:
        assert markup is not None
        msg.set_content(markup, subtype="html", charset="utf-8")
    return msg.as_bytes(policy=email.policy.SMTP)
