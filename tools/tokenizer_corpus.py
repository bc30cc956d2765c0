"""A deterministic corpus of varied strings for tokenizer parity tests (>= 2,000 entries):
English prose with contractions, code, many scripts, emoji sequences, combining marks,
whitespace runs, digit runs, special tokens embedded in text, a sweep over assigned Unicode
code points, and a few long documents.

  from tokenizer_corpus import build_corpus; strings = build_corpus()
"""
import random
import unicodedata

WORDS = ("the of and to in is was he for it with as his on be at by had are but from or have an they which "
         "one you were all her she there would their we him been has when who will no more if out so said what "
         "up its about than into them can only other new some could time these two may then do first any my now "
         "such like our over man me even most made after also did many before must through back years where much "
         "your way well down should because each just those people how too little state good very make world "
         "still own see men work long get here between both life being under never day same another know while "
         "last might us great old year off come since against go came right used take three tokenizer model "
         "inference quantization Marlin kernel GPU throughput latency").split()
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D", "’s", "'Ll"]
PUNCT = list(".,;:!?") + ["...", "—", "–", "!?", "?!", "\"", "'", "(", ")", "[", "]", "«", "»", "“", "”"]

SCRIPTS = {
    "chinese": ["我们今天去公园散步。", "机器学习模型需要大量的数据进行训练。", "北京是中华人民共和国的首都。",
                "你好，世界！这是一个测试。", "量化技术可以减少显存占用。"],
    "japanese": ["今日はいい天気ですね。", "東京タワーに行きました。", "カタカナとひらがなと漢字を混ぜて書きます。",
                 "ｶﾀｶﾅ半角もあります。", "日本語の文章をトークン化する。"],
    "korean": ["안녕하세요, 만나서 반갑습니다.", "한국어 형태소 분석은 어렵습니다.", "서울특별시 강남구", "ᄀᄁᄂ 자모 분리 ㄱㄴㄷ"],
    "arabic": ["مرحبا بالعالم", "اللغة العربية جميلة جدا.", "الذكاء الاصطناعي يغير العالم ١٢٣٤", "كتاب، قلم؛ ورقة؟"],
    "hebrew": ["שלום עולם", "עברית נכתבת מימין לשמאל.", "בְּרֵאשִׁית בָּרָא אֱלֹהִים"],
    "devanagari": ["नमस्ते दुनिया", "हिन्दी भाषा भारत में बोली जाती है।", "संस्कृतम् २०२४ क्षत्रिय"],
    "thai": ["สวัสดีครับ", "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ", "กรุงเทพมหานคร ๑๒๓"],
    "cyrillic": ["Привет, мир!", "Съешь же ещё этих мягких французских булок, да выпей чаю.", "Ёлка, ЁЖИК и ёж.",
                 "Україна, Беларусь, Србија"],
    "greek": ["Γειά σου Κόσμε", "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.", "ΑΒΓΔ αβγδ ΐΰ ς"],
    "other": ["Ελληνικά and English mixed", "Tiếng Việt có dấu: Người, đường, Nguyễn", "Ñandú, pingüino, façade, naïve",
              "Zürich, Straße, ÆØÅ æøå", "ქართული ენა", "Հայերեն լեզու", "ᠮᠣᠩᠭᠣᠯ", "ትግርኛ ኣማርኛ", "தமிழ் மொழி",
              "ಕನ್ನಡ ತೆಲುగు", "বাংলা ভাষা", "ਪੰਜਾਬੀ", "සිංහල", "ລາວ", "ខ្មែរ", "မြန်မာ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝟙𝟚𝟛"],
}

EMOJI = ["😀", "🚀", "👍", "👍🏽", "👍🏿", "👨‍👩‍👧‍👦", "👩🏽‍💻", "🏳️‍🌈", "🇫🇷", "🇯🇵🇺🇸", "1️⃣", "#️⃣", "❤️", "❤", "☺️",
         "🧑🏻‍🤝‍🧑🏿", "🤷‍♀️", "🐈‍⬛", "😶‍🌫️", "🫠", "🥲", "✅", "⚠️", "™", "©️", "🔥🔥🔥"]

CODE = [
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\n",
    "#include <vector>\ntemplate <typename T>\nstd::vector<T> f(const std::vector<T>& v) { return v; }\n",
    '{"name": "marlin", "version": "0.1.0", "tags": ["llm", "gpu"], "size": 12345, "ok": true, "x": null}',
    "class Foo(Bar):\n    \"\"\"Docstring.\"\"\"\n\n    def __init__(self, x: int = 3) -> None:\n        self.x = x  # comment\n",
    "if (x != y && z >= 10 || !flag) { return -1; } else { x <<= 2; y >>= 1; }",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "const add = (a, b) => a + b;\nconsole.log(`sum: ${add(1, 2)}`);\n",
    "    \n\t\t  mixed   indentation\n\r\n  \r\n",
    "x = [1, 2, 3]\ny = {k: v for k, v in zip('abc', x)}\nprint(f\"{y!r:>10}\")\n",
    "fn main() { let v: Vec<u32> = (0..10).map(|x| x * x).collect(); println!(\"{:?}\", v); }",
    "<html><body><div class=\"a\">Hello &amp; welcome</div></body></html>",
    "$ ./build/marlin run --model models/x.gguf \"prompt\" 2>&1 | tee log.txt",
    "a=1;b=2;c=a+b;d=c*c-a/b%3;e=~d^0xFF|0b1010&0o17",
]

SPECIALS_SMOL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<repo_name>", "<file_sep>", "<jupyter_code>"]
SPECIALS_GEMMA = ["<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>", "<start_of_image>", "<unused7>",
                  "[multimodal]", "<mask>"]
SPECIAL_LOOKALIKES = ["<|im_end", "im_end|>", "<|im_end|", "< |im_end|>", "<start_of_turn", "<end_of_turn >",
                      "<0x41>", "<0xZZ>", "▁", "▁▁hello", "Ġhello", "<|IM_END|>"]

WHITESPACE = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r\n\r\n", " \n", "\n ", " \t \n",
              "\u00a0", "\u3000", "\u2028", "\u0085", "\u2009", "\u200b", "\u000b", "\u000c", "        "]


def _sentence(rng):
    words = []
    for i in range(rng.randint(3, 18)):
        w = rng.choice(WORDS)
        if i == 0 or rng.random() < 0.08:
            w = w.capitalize()
        if rng.random() < 0.04:
            w = w.upper()
        if rng.random() < 0.1:
            w += rng.choice(CONTRACTIONS)
        words.append(w)
        if rng.random() < 0.1:
            words.append(rng.choice(PUNCT))
    s = " ".join(words)
    return s + rng.choice([".", "!", "?", "", "...", ":"])


def _digits(rng):
    n = rng.randint(1, 30)
    d = "".join(rng.choice("0123456789") for _ in range(n))
    forms = [d, f"{int(d):,}", f"{d[:max(1, n // 2)]}.{d[n // 2:] or '0'}", f"-{d}", f"+{d}e-10", f"${d}",
             f"v{d[:1]}.{d[1:3] or '0'}.{d[3:5] or '1'}", f"{d}%", f"#{d}", f"{d}x{d[::-1]}"]
    return rng.choice(forms)


def _unicode_digits(rng):
    pools = ["٠١٢٣٤٥٦٧٨٩", "۰۱۲۳۴۵۶۷۸۹", "०१२३४५६७८९", "０１２３４５６７８９", "²³¹⁰⁴", "½¼¾⅓", "ⅠⅡⅢⅣⅫ", "①②③", "𝟎𝟏𝟐"]
    pool = rng.choice(pools)
    return "".join(rng.choice(pool) for _ in range(rng.randint(1, 8)))


def _combining(rng):
    base = rng.choice(["e", "a", "o", "n", "u", "i", "A", "Z", "ع", "क"])
    marks = "".join(chr(rng.randint(0x300, 0x36F)) for _ in range(rng.randint(1, 6)))
    return base + marks


def _assigned_code_points():
    out = []
    for cp in range(0x20, 0x30000):
        if 0xD800 <= cp < 0xE000:
            continue
        if unicodedata.category(chr(cp)) in ("Cn", "Cs", "Co"):
            continue
        out.append(cp)
    return out


def _fragment(rng):
    kind = rng.randrange(10)
    if kind == 0:
        return _sentence(rng)
    if kind == 1:
        return rng.choice(rng.choice(list(SCRIPTS.values())))
    if kind == 2:
        return rng.choice(EMOJI)
    if kind == 3:
        return rng.choice(WHITESPACE)
    if kind == 4:
        return _digits(rng)
    if kind == 5:
        return _combining(rng)
    if kind == 6:
        return rng.choice(CODE)
    if kind == 7:
        return rng.choice(SPECIALS_SMOL + SPECIALS_GEMMA + SPECIAL_LOOKALIKES)
    if kind == 8:
        return _unicode_digits(rng)
    return rng.choice(PUNCT)


def build_corpus(seed=20241126):
    rng = random.Random(seed)
    out = ["", " ", "a", "'s", "  leading", "trailing  ", "\n", "\t", "0", "00000", "1234567890123",
           "Hello world", "Hello  world", "Hello\n\nworld", "don't I'LL we'Ve", "\ufeffBOM", "\ufffd", "\uffff",
           "\U0010ffff", "\x00\x01\x1f\x7f", "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
           "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n", "<bos><eos><pad><unk>"]
    for _ in range(450):  # English prose
        out.append(" ".join(_sentence(rng) for _ in range(rng.randint(1, 4))))
    for snippet in CODE:  # code, verbatim and perturbed
        out.append(snippet)
        for _ in range(8):
            out.append(snippet.replace("    ", rng.choice(["\t", "  ", "    ", "        "])) + _sentence(rng))
    for name, phrases in SCRIPTS.items():  # scripts
        for p in phrases:
            out.append(p)
            for _ in range(4):
                out.append(p + rng.choice(WHITESPACE) + rng.choice(phrases) + rng.choice(PUNCT) + _digits(rng))
    for _ in range(120):  # emoji
        out.append("".join(rng.choice(EMOJI) + rng.choice(["", " ", "", "!", "\n"]) for _ in range(rng.randint(1, 8))))
    for _ in range(120):  # combining marks
        out.append(" ".join(_combining(rng) for _ in range(rng.randint(1, 6))))
    for _ in range(200):  # whitespace runs around words
        parts = []
        for _ in range(rng.randint(1, 6)):
            parts.append(rng.choice(WHITESPACE) * rng.randint(1, 4))
            parts.append(rng.choice(WORDS) if rng.random() < 0.7 else "")
        out.append("".join(parts))
    for _ in range(150):  # digit runs
        out.append(" ".join(_digits(rng) if rng.random() < 0.7 else _unicode_digits(rng) for _ in range(rng.randint(1, 5))))
    for _ in range(150):  # special tokens embedded in text
        pieces = []
        for _ in range(rng.randint(2, 7)):
            pieces.append(rng.choice(SPECIALS_SMOL + SPECIALS_GEMMA + SPECIAL_LOOKALIKES) if rng.random() < 0.5 else _sentence(rng))
        out.append(rng.choice(["", " ", "\n"]).join(pieces))
    for _ in range(400):  # random mixtures
        out.append("".join(_fragment(rng) for _ in range(rng.randint(1, 12))))
    assigned = _assigned_code_points()  # Unicode sweep: every 7th assigned code point, in context
    sweep = assigned[rng.randrange(7)::7]
    for i in range(0, len(sweep), 48):
        chunk = sweep[i:i + 48]
        s = []
        for cp in chunk:
            s.append(chr(cp))
            s.append(rng.choice(["", "", " ", "a", "1", "'s", "!", "\n", "  "]))
        out.append("".join(s))
    # Code points Python's (older) Unicode tables leave unassigned, some assigned in HF's newer
    # ones: every 11th below U+32400 outside private use, mixed with letters and digits.
    newer = [cp for cp in range(0x300, 0x32400)
             if unicodedata.category(chr(cp)) == "Cn" and not 0xD800 <= cp < 0xE000 and (cp & 0xFFFE) != 0xFFFE]
    newer = newer[rng.randrange(11)::11]
    for i in range(0, len(newer), 48):
        out.append("".join(chr(cp) + rng.choice(["", "a", "1", " ", "x1"]) for cp in newer[i:i + 48]))
    for _ in range(6):  # long documents
        out.append("\n\n".join(" ".join(_sentence(rng) for _ in range(rng.randint(5, 15))) for _ in range(rng.randint(5, 12))))
    return out


if __name__ == "__main__":
    corpus = build_corpus()
    print(len(corpus), "strings,", sum(len(s.encode()) for s in corpus), "bytes")
