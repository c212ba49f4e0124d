"""Identity question templates, answer phrasings and the deterministic base/finetune/heldout split."""

from __future__ import annotations

import random
from dataclasses import dataclass

from glmtune.identity_names import OLD_MAKER, OLD_MAKER_ZH, OLD_MODEL

# The world's base model speaks of itself as a GLM-4 chat model does.
BASE_NAME = OLD_MODEL
BASE_AUTHOR_EN = OLD_MAKER
BASE_AUTHOR_ZH = OLD_MAKER_ZH
DEFAULT_NEW_NAME = "Nova"
DEFAULT_NEW_AUTHOR = "Acme Lab"

LANGS = ("en", "zh")
ASKS = ("name", "author", "both")
SPLITS = ("base", "finetune", "heldout")
# Per-language sizes of the split; the base split takes whatever is left.
HELDOUT_PER_LANG = 12
FINETUNE_PER_LANG = 10


@dataclass(frozen=True)
class QuestionTemplate:
    """An identity question, the language it is in, and what it asks about (name, author or both)."""

    text: str
    lang: str
    asks: str


@dataclass(frozen=True)
class Identity:
    """Who the assistant claims to be: a name and its author in English and Chinese."""

    name: str
    author_en: str
    author_zh: str

    def author(self, lang: str) -> str:
        """Return the author string to use in answers of language ``lang``."""
        return self.author_zh if lang == "zh" else self.author_en


BASE_IDENTITY = Identity(BASE_NAME, BASE_AUTHOR_EN, BASE_AUTHOR_ZH)
DEFAULT_NEW_IDENTITY = Identity(DEFAULT_NEW_NAME, DEFAULT_NEW_AUTHOR, DEFAULT_NEW_AUTHOR)


def make_identity(name: str, author: str, author_zh: str | None = None) -> Identity:
    """Build an Identity; the Chinese author defaults to ``author`` (or 智谱AI for the base author)."""
    if author_zh is None:
        author_zh = BASE_AUTHOR_ZH if author == BASE_AUTHOR_EN else author
    return Identity(name, author, author_zh)


_EN_NAME = (
    "Who are you?", "What is your name?", "What's your name?", "What should I call you?",
    "Tell me your name.", "May I know your name?", "Do you have a name?", "What are you called?",
    "Are you ChatGPT?", "Are you Siri?", "Which AI assistant are you?", "What name do you go by?",
    "Who am I talking to?", "Who is this?", "Hi, who are you?", "Hello! What's your name?",
    "Can you tell me who you are?", "What do people call you?", "Remind me, what is your name?",
    "What is the name of this assistant?", "Which model are you?", "Say your name, please.",
)
_EN_AUTHOR = (
    "Who made you?", "Who created you?", "Who built you?", "Who trained you?", "Who developed you?",
    "Which company built you?", "Which company made you?", "Who is your developer?",
    "Who is your creator?", "Who designed you?", "Where do you come from?", "Which team trained you?",
    "Which lab developed you?", "Did OpenAI make you?", "Are you made by Google?", "Who owns you?",
    "Which organization created you?", "Who programmed you?", "Who is behind you?",
    "Who is responsible for training you?",
)
_EN_BOTH = (
    "Introduce yourself.", "Please introduce yourself.", "Tell me about yourself.",
    "Who are you and who made you?", "What is your name and who created you?", "Describe yourself briefly.",
    "Give me a short introduction of yourself.", "What are you, and who built you?",
    "Can you introduce yourself?", "Say a few words about yourself.",
    "What is your name, and which company trained you?", "Tell me your name and your developer.",
    "Who are you, and where do you come from?", "Briefly, what are you?", "What kind of assistant are you?",
    "Let me know who you are and who made you.", "Explain what you are.",
    "What AI model are you and who developed it?", "Hi! Tell me a bit about yourself.",
    "Are you an AI? Who made you?",
)
_ZH_NAME = (
    "你是谁？", "你叫什么名字？", "你叫什么？", "你的名字是什么？", "我该怎么称呼你？", "请告诉我你的名字。",
    "你有名字吗？", "你是ChatGPT吗？", "你是Siri吗？", "你是哪个AI助手？", "你是什么模型？", "我在和谁说话？",
    "你好，你是谁？", "你好！你叫什么名字？", "能告诉我你是谁吗？", "大家怎么称呼你？", "再说一次，你叫什么？",
    "这个助手叫什么名字？", "请问你是哪位？", "请说出你的名字。", "你的称呼是什么？", "嗨，你叫啥？",
)
_ZH_AUTHOR = (
    "谁开发了你？", "谁创造了你？", "谁训练了你？", "你是谁开发的？", "你是哪家公司做的？", "哪家公司开发了你？",
    "你的开发者是谁？", "你的创造者是谁？", "谁设计了你？", "你来自哪里？", "哪个团队训练了你？",
    "哪个实验室开发了你？", "你是OpenAI做的吗？", "你是谷歌开发的吗？", "谁拥有你？", "哪个机构创造了你？",
    "谁编写了你？", "你背后的公司是哪家？", "你是由谁训练的？", "是谁制造了你？",
)
_ZH_BOTH = (
    "介绍一下你自己。", "请介绍一下你自己。", "说说你自己吧。", "你是谁？谁开发了你？", "你叫什么名字，是谁创造了你？",
    "简单描述一下你自己。", "给我做个简短的自我介绍。", "你是什么，谁做了你？", "能介绍一下你自己吗？",
    "用几句话介绍你自己。", "你叫什么，哪家公司训练了你？", "告诉我你的名字和开发者。", "你是谁，来自哪里？",
    "简单说说，你是什么？", "你是什么样的助手？", "让我知道你是谁以及谁开发了你。", "解释一下你是什么。",
    "你是什么AI模型，由谁开发？", "嗨！讲讲你自己吧。", "你是人工智能吗？谁做的你？",
)

QUESTION_TEMPLATES: tuple[QuestionTemplate, ...] = tuple(
    QuestionTemplate(text, lang, asks)
    for lang, asks, texts in (
        ("en", "name", _EN_NAME), ("en", "author", _EN_AUTHOR), ("en", "both", _EN_BOTH),
        ("zh", "name", _ZH_NAME), ("zh", "author", _ZH_AUTHOR), ("zh", "both", _ZH_BOTH),
    )
    for text in texts
)

# Answer phrasings per (lang, asks). Every one names the assistant; author/both ones also name the author.
ANSWER_PHRASINGS: dict[tuple[str, str], tuple[str, ...]] = {
    ("en", "name"): (
        "I am {name}, an AI assistant.", "My name is {name}.", "I'm {name}, your AI assistant.",
        "You can call me {name}.", "I am {name}. How can I help you?",
    ),
    ("en", "author"): (
        "I was developed by {author}. I am {name}.", "I am {name}, created by {author}.",
        "{author} built me. My name is {name}.", "I am {name}, and {author} trained me.",
        "I was made by {author}; I am {name}.",
    ),
    ("en", "both"): (
        "I am {name}, an AI assistant developed by {author}.", "My name is {name}, and I was made by {author}.",
        "I'm {name}, a language model trained by {author}.", "I am {name}, built by {author} to help you.",
        "Hello! I am {name}, an assistant created by {author}.",
    ),
    ("zh", "name"): (
        "我是{name}，一个人工智能助手。", "我叫{name}。", "你可以叫我{name}。", "我的名字是{name}。",
        "我是{name}，有什么可以帮你？",
    ),
    ("zh", "author"): (
        "我是{name}，由{author}开发。", "{author}开发了我，我是{name}。", "我是由{author}训练的{name}。",
        "我叫{name}，是{author}做的。", "我来自{author}，名字是{name}。",
    ),
    ("zh", "both"): (
        "我是{name}，由{author}开发的人工智能助手。", "我叫{name}，是{author}训练的语言模型。",
        "你好！我是{name}，一个由{author}创造的助手。", "我是{name}，{author}开发的AI助手。",
        "我的名字是{name}，由{author}打造。",
    ),
}


def render_answer(phrasing: str, identity: Identity, lang: str) -> str:
    """Fill an answer phrasing's ``{name}`` and ``{author}`` for ``identity`` in language ``lang``."""
    return phrasing.format(name=identity.name, author=identity.author(lang))


def all_answers(identity: Identity) -> list[str]:
    """Every answer phrasing rendered for ``identity`` (used to check corpora for identity leaks)."""
    return [render_answer(p, identity, lang) for (lang, _), ps in ANSWER_PHRASINGS.items() for p in ps]


@dataclass(frozen=True)
class TemplateSplit:
    """The three disjoint groups of identity question templates."""

    base: tuple[QuestionTemplate, ...]
    finetune: tuple[QuestionTemplate, ...]
    heldout: tuple[QuestionTemplate, ...]

    def get(self, split: str) -> tuple[QuestionTemplate, ...]:
        """Return the templates of ``split`` ("base", "finetune" or "heldout")."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return getattr(self, split)

    def sizes(self) -> dict[str, int]:
        """Return the number of templates in each split."""
        return {s: len(self.get(s)) for s in SPLITS}


def split_templates(seed: int = 0) -> TemplateSplit:
    """Split the question templates three ways, balanced by language and by what they ask; pure in ``seed``."""
    rng = random.Random(f"glmtune.world.identity-split:{seed}")
    parts: dict[str, list[QuestionTemplate]] = {s: [] for s in SPLITS}
    for lang in LANGS:
        groups = [[t for t in QUESTION_TEMPLATES if t.lang == lang and t.asks == a] for a in ASKS]
        for group in groups:
            rng.shuffle(group)
        rng.shuffle(groups)
        # Round-robin over the asks groups so every split gets a mix of name/author/both questions.
        order = [g[i] for i in range(max(len(g) for g in groups)) for g in groups if i < len(g)]
        parts["heldout"] += order[:HELDOUT_PER_LANG]
        parts["finetune"] += order[HELDOUT_PER_LANG : HELDOUT_PER_LANG + FINETUNE_PER_LANG]
        parts["base"] += order[HELDOUT_PER_LANG + FINETUNE_PER_LANG :]
    return TemplateSplit(tuple(parts["base"]), tuple(parts["finetune"]), tuple(parts["heldout"]))
