"""HTML pages in several realistic news layouts around an article whose text is known.

Used by tests/test_formats.py (with short texts written for the tests) and by
benchmarks/ingest_bench.py (extraction quality). :func:`page` returns the HTML and the
boilerplate lines it put around the article (menus, related links, comments, footers), so a
test can check that the article is kept and the boilerplate is not.
"""

from __future__ import annotations

import html
import json
import zlib
from dataclasses import dataclass

LAYOUTS = ("news_ru", "blog", "portal", "jsonld")
# Harder: lead paragraphs of other stories, an inline "read also" link and a photo caption in
# the body, partner teasers, comments under class names trafilatura does not know.
HARD_LAYOUTS = ("dense",)


@dataclass(frozen=True)
class Article:
    title: str
    paragraphs: tuple[str, ...]
    date: str  # YYYY-MM-DD
    author: str
    site: str  # host, e.g. "www.ng.ru"
    site_name: str
    lang: str = "ru"


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def _links(items: list[str], cls: str) -> str:
    return f'<ul class="{cls}">' + "".join(f'<li><a href="/x/{i}">{html.escape(t)}</a></li>' for i, t in enumerate(items)) + "</ul>"


def _boilerplate(lang: str) -> dict[str, list[str]]:
    if lang == "ru":
        return {
            "menu": ["Главная", "Политика", "Экономика", "В мире", "Общество", "Культура", "Спорт", "Архив номеров"],
            "related": ["Правительство обсудило новые меры поддержки малого бизнеса в регионах",
                        "В Подмосковье открылся крупнейший логистический центр страны",
                        "Эксперты спорят о будущем рынка подержанных автомобилей"],
            "comments": ["Наконец-то хоть кто-то об этом написал, спасибо редакции за честный материал!",
                         "Я живу в этом районе уже двадцать лет, и ничего подобного здесь не видел.",
                         "Опять одни обещания, посмотрим, что будет через год на самом деле."],
            "footer": ["Все права защищены. Перепечатка материалов только с письменного разрешения редакции.",
                       "Свидетельство о регистрации СМИ выдано федеральной службой по надзору в сфере связи."],
            "extra": ["Подпишитесь на нашу рассылку и получайте главные новости дня каждое утро",
                      "Мы используем файлы cookie, чтобы сайт работал удобнее для вас"],
        }
    return {
        "menu": ["Home", "Politics", "Business", "World", "Science", "Culture", "Sport", "Print archive"],
        "related": ["Ministers discuss new support for small firms in the regions",
                    "Largest logistics hub in the country opens outside the capital",
                    "Experts argue about the future of the used car market"],
        "comments": ["Finally somebody wrote about this, thanks to the editors for an honest piece!",
                     "I have lived in this district for twenty years and never saw anything like it.",
                     "More promises again, let us see what actually happens in a year from now."],
        "footer": ["All rights reserved. Reproduction only with the written permission of the editors.",
                   "Registered as a news outlet with the national communications regulator."],
        "extra": ["Subscribe to our newsletter and get the top stories every morning",
                  "We use cookies to make this site work better for you"],
    }


def page(article: Article, layout: str) -> tuple[str, list[str]]:
    """The page's HTML and the boilerplate lines placed around the article."""
    b = _boilerplate(article.lang)
    title = html.escape(article.title)
    body = "".join(_p(t) for t in article.paragraphs)
    url = f"https://{article.site}/news/{article.date}/{zlib.crc32(article.title.encode()) % 100000}.html"
    head = (f'<meta charset="utf-8"><title>{title} | {html.escape(article.site_name)}</title>'
            f'<link rel="canonical" href="{url}">')
    comments = "".join(f'<div class="comment"><span class="user">user{i}</span>{_p(c)}</div>'
                       for i, c in enumerate(b["comments"]))
    footer = "<footer>" + "".join(_p(f) for f in b["footer"]) + "</footer>"
    if layout == "news_ru":
        head += (f'<meta name="author" content="{html.escape(article.author)}">'
                 f'<meta property="article:published_time" content="{article.date}T09:30:00+03:00">'
                 f'<meta property="og:site_name" content="{html.escape(article.site_name)}">')
        doc = (f'<header><div class="logo">{html.escape(article.site_name)}</div><nav>{_links(b["menu"], "menu")}</nav></header>'
               f'<div class="breadcrumbs"><a href="/">{b["menu"][0]}</a> / <a href="/p">{b["menu"][1]}</a></div>'
               f'<article><h1>{title}</h1><div class="meta"><time datetime="{article.date}">{article.date}</time> '
               f'<span class="author">{html.escape(article.author)}</span></div>{body}</article>'
               f'<aside class="related"><h3>{"Читайте также" if article.lang == "ru" else "Read also"}</h3>{_links(b["related"], "related")}</aside>'
               f'<section class="comments"><h3>{"Комментарии" if article.lang == "ru" else "Comments"}</h3>{comments}</section>{footer}')
    elif layout == "blog":
        head += f'<meta name="date" content="{article.date}"><meta name="author" content="{html.escape(article.author)}">'
        doc = (f'<div id="wrap"><div id="sidebar"><h4>Рубрики</h4>{_links(b["menu"], "cats")}'
               f'<h4>Популярное</h4>{_links(b["related"], "popular")}</div>'
               f'<div id="content"><div class="post"><h2 class="post-title">{title}</h2>'
               f'<div class="post-info">{article.date}, {html.escape(article.author)}</div>'
               f'<div class="post-content entry-content">{body}</div>'
               f'<div class="share">Facebook Twitter Telegram</div></div>'
               f'<div id="comments" class="comments-area">{comments}<form><textarea></textarea></form></div></div>'
               f'<div class="newsletter">{_p(b["extra"][0])}</div>{footer}</div>')
    elif layout == "portal":
        head += f'<meta property="og:title" content="{title}"><meta property="og:site_name" content="{html.escape(article.site_name)}">'
        doc = (f'<div class="ad-banner">{_p(b["extra"][0])}</div><div class="topmenu">{_links(b["menu"], "top")}</div>'
               f'<div class="cookie">{_p(b["extra"][1])}</div>'
               f'<div class="layout"><div class="main"><div class="content"><h1 class="headline">{title}</h1>'
               f'<div class="byline">{html.escape(article.author)} · {article.date}</div>'
               f'<div class="text">{body}</div></div>'
               f'<div class="most-read"><h3>Most read</h3>{_links(b["related"], "most")}</div></div>'
               f'<div class="right">{_links(b["menu"][2:6], "rubrics")}</div></div>'
               f'<div class="comments-block">{comments}</div>{footer}')
    elif layout == "jsonld":
        ld = {"@context": "https://schema.org", "@type": "NewsArticle", "headline": article.title,
              "datePublished": f"{article.date}T08:00:00Z", "author": {"@type": "Person", "name": article.author},
              "publisher": {"@type": "Organization", "name": article.site_name}}
        head += f'<script type="application/ld+json">{json.dumps(ld, ensure_ascii=False)}</script>'
        cards = "".join(f'<div class="card"><a href="/r/{i}"><h4>{html.escape(t)}</h4></a></div>'
                        for i, t in enumerate(b["related"]))
        doc = (f'<nav class="navbar">{_links(b["menu"], "nav")}</nav><main><h1>{title}</h1>{body}</main>'
               f'<section class="recommended">{cards}</section>'
               f'<div class="disqus">{comments}</div><div class="subscribe">{_p(b["extra"][0])}</div>{footer}')
    elif layout == "dense":
        leads = "".join(f'<div class="lead-item"><a href="/m/{i}"><h3>{html.escape(t)}</h3></a>{_p(c)}</div>'
                        for i, (t, c) in enumerate(zip(b["related"], b["comments"])))
        half = len(article.paragraphs) // 2 or 1
        inline = (f'<p><b>{"Читайте также" if article.lang == "ru" else "Read also"}:</b> '
                  f'<a href="/r/9">{html.escape(b["extra"][0])}</a></p>')
        figure = f'<figure><img src="/i.jpg"><figcaption>{html.escape(b["footer"][1])}</figcaption></figure>'
        talk = "".join(f'<div class="talk-item"><div class="nick">reader{i}</div><p>{html.escape(c)}</p></div>'
                       for i, c in enumerate(b["comments"]))
        teasers = "".join(f'<div class="partner-teaser"><p>{html.escape(t)}</p></div>' for t in b["related"])
        head += f'<meta property="article:published_time" content="{article.date}T07:15:00+03:00">'
        doc = (f'<header>{_links(b["menu"], "menu")}</header><div class="main-news">{leads}</div>'
               f'<div class="article-page"><h1>{title}</h1><div class="typography">'
               + "".join(_p(t) for t in article.paragraphs[:half]) + inline + figure
               + "".join(_p(t) for t in article.paragraphs[half:])
               + f'</div><div class="share">{html.escape(b["menu"][0])}</div></div>'
               f'<div class="partners">{teasers}</div><div class="talk">{talk}</div>'
               f'<div class="bottom">{_p(b["footer"][0])}{_p(b["extra"][1])}</div>')
        lines = list(b["related"]) + list(b["comments"]) + list(b["footer"]) + list(b["extra"])
        return f'<!DOCTYPE html><html lang="{article.lang}"><head>{head}</head><body>{doc}</body></html>', lines
    else:
        raise ValueError(f"unknown layout {layout!r}")
    lines = [line for group in ("related", "comments", "footer", "extra") for line in b[group]]
    return f'<!DOCTYPE html><html lang="{article.lang}"><head>{head}</head><body>{doc}</body></html>', lines
