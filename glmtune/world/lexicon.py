"""Word lists of the synthetic world: countries, capitals, bilingual words, people, places and times."""

from __future__ import annotations

# (country_en, country_zh, capital_en, capital_zh)
COUNTRIES: tuple[tuple[str, str, str, str], ...] = (
    ("France", "法国", "Paris", "巴黎"),
    ("Germany", "德国", "Berlin", "柏林"),
    ("Japan", "日本", "Tokyo", "东京"),
    ("China", "中国", "Beijing", "北京"),
    ("Italy", "意大利", "Rome", "罗马"),
    ("Spain", "西班牙", "Madrid", "马德里"),
    ("the United Kingdom", "英国", "London", "伦敦"),
    ("Russia", "俄罗斯", "Moscow", "莫斯科"),
    ("Canada", "加拿大", "Ottawa", "渥太华"),
    ("Egypt", "埃及", "Cairo", "开罗"),
    ("India", "印度", "New Delhi", "新德里"),
    ("Brazil", "巴西", "Brasilia", "巴西利亚"),
    ("Australia", "澳大利亚", "Canberra", "堪培拉"),
    ("South Korea", "韩国", "Seoul", "首尔"),
    ("Thailand", "泰国", "Bangkok", "曼谷"),
    ("Vietnam", "越南", "Hanoi", "河内"),
    ("Greece", "希腊", "Athens", "雅典"),
    ("Portugal", "葡萄牙", "Lisbon", "里斯本"),
    ("the Netherlands", "荷兰", "Amsterdam", "阿姆斯特丹"),
    ("Belgium", "比利时", "Brussels", "布鲁塞尔"),
    ("Sweden", "瑞典", "Stockholm", "斯德哥尔摩"),
    ("Norway", "挪威", "Oslo", "奥斯陆"),
    ("Finland", "芬兰", "Helsinki", "赫尔辛基"),
    ("Denmark", "丹麦", "Copenhagen", "哥本哈根"),
    ("Poland", "波兰", "Warsaw", "华沙"),
    ("Austria", "奥地利", "Vienna", "维也纳"),
    ("Switzerland", "瑞士", "Bern", "伯尔尼"),
    ("Ireland", "爱尔兰", "Dublin", "都柏林"),
    ("Turkey", "土耳其", "Ankara", "安卡拉"),
    ("Iran", "伊朗", "Tehran", "德黑兰"),
    ("Mexico", "墨西哥", "Mexico City", "墨西哥城"),
    ("Argentina", "阿根廷", "Buenos Aires", "布宜诺斯艾利斯"),
    ("Chile", "智利", "Santiago", "圣地亚哥"),
    ("Peru", "秘鲁", "Lima", "利马"),
    ("Kenya", "肯尼亚", "Nairobi", "内罗毕"),
    ("Indonesia", "印度尼西亚", "Jakarta", "雅加达"),
    ("the Philippines", "菲律宾", "Manila", "马尼拉"),
    ("Malaysia", "马来西亚", "Kuala Lumpur", "吉隆坡"),
    ("Cuba", "古巴", "Havana", "哈瓦那"),
    ("Hungary", "匈牙利", "Budapest", "布达佩斯"),
    ("New Zealand", "新西兰", "Wellington", "惠灵顿"),
    ("Nepal", "尼泊尔", "Kathmandu", "加德满都"),
)

# (english, chinese, part of speech: "n" noun, "c" colour, "a" adjective)
WORDS: tuple[tuple[str, str, str], ...] = (
    ("apple", "苹果", "n"), ("water", "水", "n"), ("book", "书", "n"), ("cat", "猫", "n"),
    ("dog", "狗", "n"), ("fish", "鱼", "n"), ("bird", "鸟", "n"), ("tree", "树", "n"),
    ("flower", "花", "n"), ("sun", "太阳", "n"), ("moon", "月亮", "n"), ("star", "星星", "n"),
    ("river", "河", "n"), ("mountain", "山", "n"), ("sea", "大海", "n"), ("rain", "雨", "n"),
    ("snow", "雪", "n"), ("wind", "风", "n"), ("sky", "天空", "n"), ("city", "城市", "n"),
    ("school", "学校", "n"), ("teacher", "老师", "n"), ("student", "学生", "n"), ("friend", "朋友", "n"),
    ("house", "房子", "n"), ("door", "门", "n"), ("window", "窗户", "n"), ("table", "桌子", "n"),
    ("chair", "椅子", "n"), ("car", "汽车", "n"), ("train", "火车", "n"), ("plane", "飞机", "n"),
    ("road", "路", "n"), ("bread", "面包", "n"), ("rice", "米饭", "n"), ("tea", "茶", "n"),
    ("milk", "牛奶", "n"), ("egg", "鸡蛋", "n"), ("music", "音乐", "n"), ("money", "钱", "n"),
    ("computer", "电脑", "n"), ("phone", "手机", "n"), ("pen", "笔", "n"), ("paper", "纸", "n"),
    ("horse", "马", "n"), ("garden", "花园", "n"), ("clock", "时钟", "n"), ("shoe", "鞋", "n"),
    ("red", "红色", "c"), ("blue", "蓝色", "c"), ("green", "绿色", "c"), ("yellow", "黄色", "c"),
    ("white", "白色", "c"), ("black", "黑色", "c"),
    ("big", "大", "a"), ("small", "小", "a"), ("happy", "快乐", "a"), ("beautiful", "美丽", "a"),
    ("hot", "热", "a"), ("cold", "冷", "a"), ("new", "新", "a"), ("old", "旧", "a"),
)

NOUNS = tuple(w for w in WORDS if w[2] == "n")
COLOURS = tuple(w for w in WORDS if w[2] == "c")
ADJECTIVES = tuple(w for w in WORDS if w[2] == "a")

# People used in generic sentences. Candidate new-identity words ("Nova", "Orion", "Atlas") appear here
# as ordinary person names so a base model (and its tokenizer) has seen them outside any identity claim.
PEOPLE: tuple[tuple[str, str], ...] = (
    ("Tom", "汤姆"), ("Lily", "莉莉"), ("Anna", "安娜"), ("Mr. Wang", "王先生"), ("Ms. Li", "李女士"),
    ("my mother", "我的妈妈"), ("my father", "我的爸爸"), ("the teacher", "老师"), ("Nova", "Nova"),
    ("Orion", "Orion"), ("Jack", "杰克"), ("Xiao Ming", "小明"), ("Atlas", "Atlas"), ("Emma", "艾玛"),
)

PLACES: tuple[tuple[str, str], ...] = (
    ("school", "学校"), ("park", "公园"), ("market", "市场"), ("library", "图书馆"), ("station", "车站"),
    ("hospital", "医院"), ("beach", "海边"), ("lab", "实验室"), ("office", "办公室"), ("shop", "商店"),
    ("museum", "博物馆"), ("zoo", "动物园"),
)

TIMES: tuple[tuple[str, str], ...] = (
    ("today", "今天"), ("yesterday", "昨天"), ("this morning", "今天早上"), ("last week", "上周"),
    ("on Sunday", "星期天"), ("in the evening", "晚上"), ("after lunch", "午饭后"),
)

# (english predicate, chinese predicate) for "It is ... in {city} today." / "今天{city}...。"
WEATHER: tuple[tuple[str, str], ...] = (
    ("sunny", "是晴天"), ("rainy", "下雨"), ("windy", "刮风"), ("cold", "很冷"), ("hot", "很热"),
    ("snowy", "下雪"), ("cloudy", "多云"),
)
