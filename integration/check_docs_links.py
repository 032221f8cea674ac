#!/usr/bin/env python3
"""Check every internal link and anchor of the built handbook.

    python3 integration/check_docs_links.py docs/book

Reads each HTML page mdbook wrote, collects its ids, and checks that every
relative href (and src) names a file that exists and, with #anchor, an id
on that page. External links (a scheme) are not fetched: CI has no
internet. Exits 1 listing every broken link.
"""
import os
import sys
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        for key in ("href", "src"):
            if a.get(key):
                self.links.append((tag, a[key], self.getpos()[0]))


def main(root):
    pages = {}
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(".html"):
                p = os.path.join(d, f)
                page = Page()
                with open(p, encoding="utf-8") as fh:
                    page.feed(fh.read())
                pages[os.path.normpath(p)] = page
    broken, checked = [], 0
    for path, page in sorted(pages.items()):
        # print.html repeats every page with rewritten links; 404.html is
        # served from the site root. The pages themselves are what we check.
        if os.path.basename(path) in ("print.html", "404.html", "toc.html"):
            continue
        for tag, link, line in page.links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith("//") or link.startswith("mailto:"):
                continue
            target = path if not parts.path else os.path.normpath(
                os.path.join(os.path.dirname(path), unquote(parts.path)))
            checked += 1
            where = f"{os.path.relpath(path, root)}:{line}: {tag} {link!r}"
            if not os.path.exists(target):
                broken.append(f"{where}: {os.path.relpath(target, root)} does not exist")
                continue
            if parts.fragment and target.endswith(".html"):
                ids = pages.get(target)
                if ids is None or unquote(parts.fragment) not in ids.ids:
                    broken.append(f"{where}: no anchor #{parts.fragment} there")
    for b in broken:
        print(b)
    print(f"{checked} internal links in {len(pages)} pages: {len(broken)} broken")
    return 1 if broken or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/book"))
