#!/usr/bin/env python3
"""Builds the fixed English texts from GNU manuals shipped by Debian (info files).

  evaluation corpus (perplexity, compare): the grep, sed, gzip and diffutils manuals
      python3 tools/make_corpus.py
  calibration text (GPTQ), disjoint from it: the coreutils and findutils manuals
      python3 tools/make_corpus.py --manuals coreutils find --bytes 200000 \
          --out tests/fixtures/corpus/calibration.txt

The text is the manuals' plain prose (GFDL), with Info's node separators and navigation lines
removed, cut at a paragraph boundary near --bytes. Results are committed with their sha256 beside
them, so nobody needs to rebuild them; the script documents where they came from (Debian 12).
"""
import argparse
import gzip
import hashlib
import pathlib
import re



def info_text(name: str) -> str:
    parts = sorted(pathlib.Path("/usr/share/info").glob(f"{name}.info*.gz"))
    text = "".join(gzip.open(p, "rt", encoding="utf-8", errors="replace").read() for p in parts)
    out = []
    for block in text.split("\x1f"):
        lines = block.splitlines()
        # Drop the "File: x.info, Node: ..., Next: ..." header and menus/indices.
        lines = [l for l in lines if not l.startswith(("File: ", "* Menu:", "Tag Table:", "End Tag Table", "Indirect:"))]
        body = "\n".join(lines).strip()
        if body and not body.startswith("\x08") and "Index" not in body[:40]:
            out.append(body)
    return "\n\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--manuals", nargs="+", default=["grep", "sed", "gzip", "diffutils"])
    ap.add_argument("--bytes", type=int, default=300_000)
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("tests/fixtures/corpus/gnu_manuals.txt"))
    args = ap.parse_args()
    text = "\n\n".join(info_text(m) for m in args.manuals)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    cut = text.rfind("\n\n", 0, args.bytes)
    text = text[:cut].strip() + "\n"
    args.out.write_text(text, encoding="utf-8")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    args.out.with_suffix(".sha256").write_text(f"{digest}  {args.out.name}\n")
    print(f"{args.out}: {len(text.encode())} bytes, sha256 {digest}")


if __name__ == "__main__":
    main()
