"""The unsupported-answer guard: answers the passages do not hold become "not found"."""

from dataclasses import replace

import pytest

from rag.grounding import ground
from rag.language import Language
from tests.rag.test_attribution import passage

APT = [
    passage(1, "apt purge removes a package together with its configuration files."),
    passage(2, "The weather in Lisbon is mild in winter."),
]
TEA = [passage(1, "龙井茶产于浙江省杭州市西湖一带，采摘时间通常在每年三月下旬到四月初。")]


def test_an_answer_the_passages_hold_stands_with_its_markers() -> None:
    grounding = ground(
        "Run apt purge [1]; it also deletes the configuration files.",
        "How do I remove a package and its settings?",
        APT,
        Language.ENGLISH,
    )
    assert grounding.supported
    assert grounding.text == "Run apt purge [1]; it also deletes the configuration files."
    assert grounding.cited == [1]


@pytest.mark.parametrize(
    ("answer", "question", "passages", "language"),
    [
        # made up, with a citation
        ("The capital of Australia is New South Wales [1].", "What is the capital of Australia?",
         APT, Language.ENGLISH),
        # right topic, facts from the model's memory
        ("Use dpkg --force-remove-reinstreq and then debfoster to clean orphans.",
         "How do I remove a package?", APT, Language.ENGLISH),
        # the model's own refusal, in either language
        ("The documents do not contain information about Australia.",
         "What is the capital of Australia?", APT, Language.ENGLISH),
        ("I could not find that in the passages.", "Who won in 1998?", APT, Language.ENGLISH),
        ("文档中没有提到澳大利亚的首都。", "澳大利亚的首都是哪里？", TEA, Language.CHINESE),
        ("澳大利亚的首都是堪培拉，位于新南威尔士州附近 [1]。", "澳大利亚的首都是哪里？", TEA,
         Language.CHINESE),
        ("", "anything?", APT, Language.ENGLISH),
    ],
)  # fmt: skip
def test_unsupported_answers_and_refusals_are_not_found(
    answer: str, question: str, passages, language: Language
) -> None:
    assert not ground(answer, question, passages, language).supported


def test_a_marker_stays_only_where_its_passage_supports_the_sentence() -> None:
    answer = "apt purge removes the package [2]. It deletes configuration files too [1, 2]."
    grounding = ground(answer, "How do I remove a package?", APT, Language.ENGLISH)
    assert grounding.supported
    assert (
        grounding.text == "apt purge removes the package. It deletes configuration files too [1]."
    )
    assert grounding.cited == [1]


def test_a_chinese_answer_from_the_passage_is_supported() -> None:
    grounding = ground(
        "龙井茶在每年三月下旬到四月初采摘 [1]。", "龙井茶什么时候采摘？", TEA, Language.CHINESE
    )
    assert grounding.supported and grounding.cited == [1]


def test_an_answer_that_only_repeats_the_question_answers_nothing() -> None:
    assert not ground(
        "Australia.", "What is the capital of Australia?", APT, Language.ENGLISH
    ).supported


TUTORIAL = [
    passage(1, "The SQL command CREATE TABLE weather (city varchar(80), temp_lo int, date date);"),
    passage(2, "To leave psql, type \\q. Run python3 -m venv tutorial-env to make an environment."),
]


INDEX_QUESTION = "How do I create an index on the city column of the weather table?"
INDEX_ECHO = "To create an index on the city column of the weather table, use the SQL command"
VENV_QUESTION = "How do I make a virtual environment, and how do I leave psql?"


@pytest.mark.parametrize(
    ("answer", "question", "supported"),
    [
        # made up: the prose echoes the question, the SQL is the model's own
        (
            f"{INDEX_ECHO}:\n\n```sql\nCREATE INDEX idx_city ON weather (city);\n```",
            INDEX_QUESTION,
            False,
        ),
        (f"{INDEX_ECHO}:\n\n```sql\nCREATE INDEX idx_city ON weather (city", INDEX_QUESTION, False),
        (f"{INDEX_ECHO} `CREATE INDEX idx_city ON weather (city)` in SQL.", INDEX_QUESTION, False),
        # the same without backticks, on a line of its own; and a shell line
        (f"{INDEX_ECHO}:\nCREATE INDEX idx_city ON weather (city);", INDEX_QUESTION, False),
        ("To drop it, run:\n$ dropdb weatherdb --if-exists", "How do I drop the db?", False),
        # the passage's own commands
        (
            "Run `python3 -m venv tutorial-env` [2]; type `\\q` to leave psql [2].",
            VENV_QUESTION,
            True,
        ),
    ],
)
def test_code_the_passages_do_not_hold_withdraws_the_answer(
    answer: str, question: str, supported: bool
) -> None:
    assert ground(answer, question, TUTORIAL, Language.ENGLISH).supported is supported


OPERATORS = [
    passage(1, "The // operator performs floor division (it discards the fractional part)."),
    passage(2, "In psql, \\i basics.sql reads commands from a file. See http://www.example.org."),
    passage(3, "SELECT DISTINCT city FROM weather; removes duplicate rows from the result."),
    passage(4, "在 ~/.bashrc 中为 quilt 定义别名 dquilt，使它使用 debian/patches。"),
]


@pytest.mark.parametrize(
    ("answer", "question", "language"),
    [
        # the fact is an operator, a meta-command, a keyword: no term of its own
        (
            "The // operator divides two integers and throws away the fractional part.",
            "Which operator divides two integers and throws away the fractional part?",
            Language.ENGLISH,
        ),
        (
            "The psql meta-command that reads SQL commands from a file is `\\i`.",
            "Which psql meta-command reads SQL commands from a file?",
            Language.ENGLISH,
        ),
        (
            "To return each city once, use the DISTINCT keyword in your SQL query.",
            "How do I make a query return each city only once?",
            Language.ENGLISH,
        ),
        (
            "在 ~/.bashrc 中定义的别名是 `dquilt`。",
            "教程建议在 ~/.bashrc 中定义什么别名？",
            Language.CHINESE,
        ),
    ],
)
def test_a_fact_the_passages_hold_literally_stands(
    answer: str, question: str, language: Language
) -> None:
    assert ground(answer, question, OPERATORS, language).supported


def test_a_literal_counts_only_as_a_whole_token() -> None:
    # "//" stands in the passages only inside a URL: no support for it
    answer = "The // operator divides two integers and throws away the fractional part."
    question = "Which operator divides two integers and throws away the fractional part?"
    assert not ground(answer, question, OPERATORS[1:], Language.ENGLISH).supported


QUOTAS = [
    passage(
        1,
        "配额系统可以限制用户与群组可用的磁盘空间，配额管理软件在 quota 软件包内。"
        "要在文件系统内启用配额，必须在 /etc/fstab 中指明 usrquota 与 grpquota 选项。"
        "重新启动电脑后，就能在未使用的磁盘空间中更新配额。"
        "warnquota 命令在用户超过软限制时发出警告，通常由 cron 唤起。"
        "一个与此无关的段落讲的是别的事情：备份、日志轮转和网络时间同步都在下一章介绍，"
        "其中 rsync 用硬链接节省空间，logrotate 每周压缩旧日志，chrony 校准系统时钟。"
        "最后，edquota user 命令用来改变某个用户的配额，edquota -t 设定宽限期。",
    )
]


def test_a_chinese_answer_must_come_from_the_part_of_the_passage_on_the_questions_topic() -> None:
    # Asked for the command that prints a quota report, the model names a command the
    # passage gives for something else, far from the question's words.
    question = "用哪个命令可以打印出整个文件系统所有用户的磁盘配额使用报告？"
    assert not ground("edquota 命令 [1]", question, QUOTAS, Language.CHINESE).supported
    asked = "超过软限制时由哪个命令发出警告？"
    assert ground("warnquota 命令 [1]", asked, QUOTAS, Language.CHINESE).supported


def test_a_passages_title_supports_what_the_answer_takes_from_it() -> None:
    text = (
        "Note the last block: the variable name _ acts as a wildcard and never fails to "
        "match. If no case matches, none of the branches is executed."
    )
    answer = "In Python 3.11.2 the name _ in the last case is a wildcard that never fails [1]."
    question = "In a match statement, what does the name _ in the last case do?"
    titled = [replace(passage(1, text), title="4. More Control Flow Tools — Python 3.11.2")]
    assert ground(answer, question, titled, Language.ENGLISH).supported
    untitled = [replace(passage(1, text), title="4. More Control Flow Tools")]
    assert not ground(answer, question, untitled, Language.ENGLISH).supported
