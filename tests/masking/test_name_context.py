import pytest

from masking import detect, mask_text


@pytest.mark.parametrize(
    "text",
    [
        "客户来电咨询开户进度",
        "客户要求修改预留手机号",
        "客户称收到陌生来电",
        "联系人电话见附件",
        "客户咨询理财产品",
    ],
)
def test_running_text_after_a_context_word_is_not_a_name(text: str) -> None:
    assert not [s for s in detect(text) if s.cls == "person_name"]
    assert mask_text(text) == text


@pytest.mark.parametrize(
    ("text", "masked"),
    [("客户张三来电", "客户张*来电"), ("姓名：李四", "姓名：李*"), ("户名王小明", "户名王*明")],
)
def test_names_after_context_words_are_still_masked(text: str, masked: str) -> None:
    assert mask_text(text) == masked
