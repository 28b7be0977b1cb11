"""The framework adapter tests' material: a small real Russian news corpus, a real ragkit index of
it (navec-ru, FAISS, BM25) built once per session, what the tests compare, and helpers to watch
the event loop. Test modules import the fixtures they use from here (no conftest.py in this
folder: the top-level tests import names from theirs with ``from conftest import ...``)."""

from __future__ import annotations

import pytest

import ragkit

ARTICLES = [
    ("metro", "2024-03-12", "/news/moscow/metro.txt", "Метро Москвы открыло новые станции",
     "Московский метрополитен открыл три новые станции Большой кольцевой линии. Мэр Сергей Собянин "
     "сообщил, что пассажиропоток на соседних станциях снизится на треть. Новые станции оборудованы "
     "лифтами и широкими турникетами. Поезда на линии ходят с интервалом около трёх минут. До конца "
     "года строители обещают сдать ещё два вестибюля."),
    ("technopark", "2025-10-22", "/news/moscow/technopark.txt", "Технопарки столицы растут",
     "В Москве работают более пятидесяти технопарков, где резиденты выпускают электронику, лекарства "
     "и станки. Особая экономическая зона «Технополис Москва» предлагает инвесторам льготный режим. "
     "К 2030 году площади технопарков планируют увеличить в полтора раза. Компании-резиденты получают "
     "налоговые льготы и сниженную ставку аренды."),
    ("snow", "2023-12-05", "/news/moscow/weather.txt", "Снегопад парализовал дороги",
     "Сильный снегопад накрыл столичный регион в ночь на вторник. Коммунальные службы вывели на улицы "
     "тысячи единиц снегоуборочной техники. Синоптики предупреждают о гололедице и советуют "
     "пересесть на общественный транспорт. Высота снежного покрова достигла тридцати сантиметров."),
    ("football", "2024-05-19", "/news/sport/football.txt", "«Зенит» снова стал чемпионом",
     "Петербургский «Зенит» в шестой раз подряд выиграл чемпионат России по футболу. В последнем туре "
     "команда обыграла «Ахмат» со счётом два один. Главный тренер Сергей Семак поблагодарил "
     "болельщиков за поддержку. Лучшим бомбардиром сезона стал нападающий клуба."),
    ("hockey", "2025-02-14", "/news/sport/hockey.txt", "ЦСКА вышел в плей-офф",
     "Хоккейный клуб ЦСКА досрочно обеспечил себе место в плей-офф Континентальной хоккейной лиги. "
     "Армейцы победили в серии буллитов. Вратарь команды отразил сорок бросков и был признан лучшим "
     "игроком матча. Следующую игру ЦСКА проведёт на выезде."),
    ("theatre", "2023-09-30", "/news/culture/theatre.txt", "Большой театр открыл сезон",
     "Большой театр открыл новый сезон премьерой оперы «Евгений Онегин». Постановку готовили два года, "
     "декорации создавали в мастерских театра. Билеты на первые показы раскупили за несколько часов. "
     "В сезоне зрители увидят ещё четыре премьеры балета."),
    ("space", "2024-08-01", "/news/science/space.txt", "Ракета вывела на орбиту спутники",
     "С космодрома Восточный стартовала ракета «Союз-2» с группой спутников дистанционного "
     "зондирования Земли. Аппараты будут снимать поверхность планеты для картографии и сельского "
     "хозяйства. Запуск прошёл штатно, все спутники отделились от разгонного блока."),
    ("parks", "2025-06-07", "/news/moscow/parks.txt", "В парках высадили тысячи деревьев",
     "Весной в московских парках высадили более десяти тысяч деревьев и кустарников. Экологи "
     "выбирали липы, клёны и дубы, которые хорошо переносят городской климат. В парке Горького "
     "обновили набережную и велосипедные дорожки. Жители могут предложить места для новых посадок."),
    ("ruble", "2024-11-27", "/news/economy/ruble.txt", "Курс рубля снизился",
     "Курс рубля к доллару опустился до минимума с начала года. Аналитики связывают ослабление "
     "национальной валюты с падением цен на нефть и ростом импорта. Центральный банк сохранил "
     "ключевую ставку. Экономисты ожидают стабилизации курса в первом квартале."),
    ("buses", "2023-04-18", "/news/moscow/buses.txt", "Электробусы вышли на новые маршруты",
     "На улицы Москвы вышли ещё двести электробусов отечественной сборки. Они заменят дизельные "
     "автобусы на двенадцати маршрутах в центре города. Электробусы заряжаются на конечных станциях "
     "за несколько минут. Городской транспорт становится тише и чище."),
]

DOCS = [ragkit.Document(id=i, text=text, title=title, date=date, source=source, url=f"https://news.example/{i}")
        for i, date, source, title, text in ARTICLES]
BY_ID = {d.id: d for d in DOCS}


def ranking(results) -> list[tuple[str, int, int, float]]:
    """What a ranking is made of: (doc_id, start, end, score) of each result, best first."""
    return [(r.doc_id, r.start, r.end, round(r.score, 6)) for r in results]


# Options each adapter must rank exactly as Index.search does.
OPTION_GRID = [
    pytest.param("новые станции метро", {}, id="defaults"),
    pytest.param("снегопад и транспорт", {"mode": "lexical", "k": 5}, id="lexical"),
    pytest.param("спорт чемпионат", {"mode": "dense", "k": 3, "per_doc": 1}, id="dense-per-doc-1"),
    pytest.param("Москва", {"k": 6, "per_doc": None, "filters": ragkit.Filters(since="2024-01-01", until="2025-12-31")},
                 id="dates-no-cap"),
    pytest.param("новости Москвы", {"k": 8, "filters": ragkit.Filters(source="moscow/*"),
                                    "fusion": ragkit.FusionConfig(method="rrf", dense_weight=0.5)}, id="source-rrf"),
]


@pytest.fixture(scope="session")
def news_index_path(tmp_path_factory):
    """A real index of DOCS: the model is chosen by language (navec-ru), several passages a document."""
    path = tmp_path_factory.mktemp("adapters") / "index"
    ragkit.build_index(DOCS, path, options=ragkit.BuildOptions(max_tokens=24))
    return path


@pytest.fixture(scope="session")
def news_index(news_index_path):
    return ragkit.Index.open(news_index_path)


@pytest.fixture
def slow_index(news_index_path):
    """A real open index whose search sleeps 0.3 s first and records the thread it ran on: the
    async tests see whether the event loop ran meanwhile."""
    import threading
    import time

    index = ragkit.Index.open(news_index_path)
    real_search, threads = index.search, []

    def search(*args, **kwargs):
        threads.append(threading.get_ident())
        time.sleep(0.3)
        return real_search(*args, **kwargs)

    index.search = search
    index.search_threads = threads
    return index


@pytest.fixture
def ticks_while():
    """``await ticks_while(awaitable)`` -> (its result, how many 10 ms ticks the loop ran meanwhile)."""
    import asyncio

    async def run(awaitable):
        ticks = 0
        done = asyncio.Event()

        async def tick():
            nonlocal ticks
            while not done.is_set():
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        try:
            return await awaitable, ticks
        finally:
            done.set()
            await ticker

    return run
