"""Owns Chinese surname tables and the splitting of a name into surname and given name.

Used by the name detector (a surname must start a candidate) and the name maskers. The single
surname list is Faker zh_CN's (398 entries) embedded as a string so detection does not import Faker.
"""

from __future__ import annotations

SINGLE_SURNAMES = frozenset(
    "王李张刘陈杨黄吴赵周徐孙马朱胡林郭何高罗郑梁谢宋唐许邓冯韩曹曾彭萧蔡潘田董袁于余叶蒋杜苏魏程吕丁沈任姚卢傅钟姜崔谭廖范汪"
    "陆金石戴贾韦夏邱方侯邹熊孟秦白江阎薛尹段雷黎史龙陶贺顾毛郝龚邵万钱严赖覃洪武莫孔汤向常温康施文牛樊葛邢安齐易乔伍庞颜倪庄"
    "聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶"
    "解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑"
    "郎甄丛仲虞敖巩明佘池查麻苑迟邝官封谈匡鞠惠荆乐冀郁胥南班储原栗燕楚鄢劳谌奚皮粟冼蔺楼盘满闻位厉伊仝区郜海阚花权强帅屠豆朴"
    "盖练廉禹井祖漆巴丰支卿国狄平计索宣晋相初门云容敬来扈晁芮都普阙浦戈伏鹿薄邸雍辜羊阿乌母裘亓修邰赫杭况那宿鲜印逯隆茹诸战慕"
    "危玉银亢嵇公哈湛宾戎勾茅利呼居揭干但尉冶斯元束檀衣信展阴昝智幸奉植衡富尧闭由"
)

COMPOUND_SURNAMES = frozenset(
    {
        "欧阳",
        "司马",
        "上官",
        "诸葛",
        "东方",
        "皇甫",
        "尉迟",
        "公孙",
        "慕容",
        "长孙",
        "宇文",
        "司徒",
        "令狐",
        "夏侯",
        "轩辕",
        "独孤",
        "南宫",
        "西门",
        "端木",
        "百里",
        "呼延",
        "申屠",
        "太史",
        "澹台",
        "公冶",
        "万俟",
        "闻人",
        "赫连",
        "东郭",
        "钟离",
        "宗政",
        "濮阳",
        "淳于",
        "单于",
        "公羊",
        "仲孙",
        "拓跋",
        "第五",
    }
)

# Separators inside transliterated minority and foreign names (阿依古丽·买买提).
NAME_DOTS = "·•・."


def is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


def surname_length(name: str) -> int:
    """1 or 2 for a known surname at the start of `name`, 0 when none is recognised."""
    if len(name) >= 3 and name[:2] in COMPOUND_SURNAMES:
        return 2
    return 1 if name[:1] in SINGLE_SURNAMES else 0


def split_name(name: str) -> tuple[str, str]:
    """(surname, given name); unknown surnames are taken to be one character long."""
    n = 2 if len(name) >= 3 and name[:2] in COMPOUND_SURNAMES else 1
    return name[:n], name[n:]
