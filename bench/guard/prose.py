"""Writes PII-free English prose as `pft guard scan` input: the paragraphs
of the Python language reference that ship with every CPython
(`pydoc_data.topics`), without code blocks. Used to count false spans per
10,000 characters.

usage: python3 prose.py OUT.jsonl
"""
import json
import sys

from pydoc_data.topics import topics


def main():
    out = open(sys.argv[1], "w", encoding="utf-8")
    chars = 0
    for name in sorted(topics):
        for para in topics[name].split("\n\n"):
            # Indented paragraphs are code and grammar; tables are drawn
            # with "+---" and "|".
            if para.startswith(" ") or "+--" in para or "+==" in para or len(para.strip()) < 200:
                continue
            text = " ".join(para.split())
            chars += len(text)
            out.write(json.dumps({"text": text}) + "\n")
    print(f"{chars} characters of prose", file=sys.stderr)


if __name__ == "__main__":
    main()
