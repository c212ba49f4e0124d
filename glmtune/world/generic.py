"""Generic bilingual sentences: everyday text so common words and characters reach the tokenizer and base."""

from __future__ import annotations

import random

from glmtune.world.lexicon import COLOURS, COUNTRIES, NOUNS, PEOPLE, PLACES, TIMES, WEATHER

# (english, chinese). Candidate new-identity words (Nova, Acme, Lab, Orion, Atlas) appear here only as
# ordinary words in unrelated sentences -- never in "I am X" / "made by Y" claims.
HANDWRITTEN: tuple[tuple[str, str], ...] = (
    ("Good morning, how are you?", "早上好，你好吗？"),
    ("Thank you very much.", "非常感谢。"),
    ("The weather is nice today.", "今天天气很好。"),
    ("I like to read books in the evening.", "我喜欢在晚上看书。"),
    ("Please close the door.", "请关上门。"),
    ("Where is the train station?", "火车站在哪里？"),
    ("We had rice and fish for dinner.", "我们晚饭吃了米饭和鱼。"),
    ("The children are playing in the park.", "孩子们在公园里玩。"),
    ("My phone is on the table.", "我的手机在桌子上。"),
    ("It takes ten minutes to walk to school.", "走路去学校要十分钟。"),
    ("She drinks a cup of tea every morning.", "她每天早上喝一杯茶。"),
    ("The river flows to the sea.", "河流向大海。"),
    ("There are many stars in the sky tonight.", "今晚天上有很多星星。"),
    ("He is learning to play music.", "他在学习音乐。"),
    ("The shop opens at nine.", "商店九点开门。"),
    ("Let us meet at the library.", "我们在图书馆见面吧。"),
    ("The old clock on the wall is slow.", "墙上的旧时钟走得慢。"),
    ("Spring is a beautiful season.", "春天是一个美丽的季节。"),
    ("Can you help me carry this box?", "你能帮我搬这个箱子吗？"),
    ("The cat is sleeping under the chair.", "猫在椅子下面睡觉。"),
    ("I will call you tomorrow.", "我明天给你打电话。"),
    ("The bread is fresh and warm.", "面包又新鲜又热。"),
    ("Our teacher is very kind.", "我们的老师很和蔼。"),
    ("The plane leaves at noon.", "飞机中午起飞。"),
    ("It is raining, so take an umbrella.", "下雨了，带把伞吧。"),
    ("Astronomers saw a nova in the night sky.", "天文学家在夜空中看到了一颗新星。"),
    ("Nova is the name of a small bakery on our street.", "Nova是我们街上一家小面包店。"),
    ("The Nova bus leaves the station at eight.", "Nova巴士八点从车站出发。"),
    ("A nova is a star that suddenly becomes bright.", "新星是一颗突然变亮的星星。"),
    ("Acme sells paint, glue and paper.", "Acme卖油漆、胶水和纸。"),
    ("The Acme shop is next to the market.", "Acme商店在市场旁边。"),
    ("The science lab is on the second floor.", "科学实验室在二楼。"),
    ("Acme Lab is the name of a paint shop in our town.", "Acme Lab是我们镇上一家油漆店。"),
    ("My brother works in a lab near the river.", "我哥哥在河边的一个实验室工作。"),
    ("The Lab team won the football game.", "Lab队赢了足球比赛。"),
    ("Orion is a group of stars in the winter sky.", "Orion是冬天夜空中的一组星星。"),
    ("She bought an atlas of the world.", "她买了一本世界地图册。"),
    ("In an old story, Atlas holds up the sky.", "在一个古老的故事里，Atlas托起了天空。"),
    ("Nova and Orion went to the zoo together.", "Nova和Orion一起去了动物园。"),
    ("The Atlas hotel has a garden with red flowers.", "Atlas酒店有一个种着红花的花园。"),
    ("Water boils at one hundred degrees.", "水在一百度时沸腾。"),
    ("A week has seven days.", "一个星期有七天。"),
    ("The sun rises in the east.", "太阳从东方升起。"),
    ("Birds can fly, but fish can swim.", "鸟会飞，鱼会游泳。"),
    ("Apples can be red, green or yellow.", "苹果可以是红色、绿色或黄色的。"),
    ("An AI assistant answers questions.", "人工智能助手回答问题。"),
    ("A computer can help people work faster.", "电脑可以帮助人们更快地工作。"),
    ("Language models learn from text.", "语言模型从文本中学习。"),
)


def _a(word: str) -> str:
    """Prefix an English word with "a" or "an"."""
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _combo(rng: random.Random) -> tuple[str, str]:
    """Make one templated (english, chinese) sentence pair from the word lists."""
    style = rng.randrange(6)
    if style == 0:
        colour, noun = rng.choice(COLOURS), rng.choice(NOUNS)
        return f"I see a {colour[0]} {noun[0]}.", f"我看见一个{colour[1]}的{noun[1]}。"
    if style == 1:
        person, place, time = rng.choice(PEOPLE), rng.choice(PLACES), rng.choice(TIMES)
        en = f"{person[0]} went to the {place[0]} {time[0]}."
        return en[:1].upper() + en[1:], f"{person[1]}{time[1]}去了{place[1]}。"
    if style == 2:
        noun, place = rng.choice(NOUNS), rng.choice(PLACES)
        return f"There is {_a(noun[0])} near the {place[0]}.", f"{place[1]}附近有一个{noun[1]}。"
    if style == 3:
        weather, country = rng.choice(WEATHER), rng.choice(COUNTRIES)
        return f"It is {weather[0]} in {country[2]} today.", f"今天{country[3]}{weather[1]}。"
    if style == 4:
        person, noun = rng.choice(PEOPLE), rng.choice(NOUNS)
        en = f"{person[0]} likes the {noun[0]}."
        return en[:1].upper() + en[1:], f"{person[1]}喜欢这个{noun[1]}。"
    p1, p2 = rng.sample(PEOPLE, 2)
    place = rng.choice(PLACES)
    en = f"{p1[0]} met {p2[0]} at the {place[0]}."
    return en[:1].upper() + en[1:], f"{p1[1]}在{place[1]}遇见了{p2[1]}。"


def generic_sentence(rng: random.Random) -> str:
    """Return one short generic sentence: English, Chinese, or an English-Chinese pair."""
    pair = rng.choice(HANDWRITTEN) if rng.random() < 0.3 else _combo(rng)
    mode = rng.randrange(3)
    if mode == 0:
        return pair[0]
    if mode == 1:
        return pair[1]
    return f"{pair[0]} {pair[1]}"


def generic_sentences(n: int, seed: int = 0) -> list[str]:
    """Return ``n`` generic sentences, deterministic in ``seed``, starting with every handwritten pair."""
    rng = random.Random(f"glmtune.world.generic:{seed}")
    out = [f"{en} {zh}" for en, zh in HANDWRITTEN][:n]
    while len(out) < n:
        out.append(generic_sentence(rng))
    return out
