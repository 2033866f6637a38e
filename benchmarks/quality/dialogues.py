"""The scripted conversations of benchmarks.quality.dialogue: 20 chats of 6 messages, 10 Chinese, 10
English.

Each message carries the mood its writer meant (`positive`, `negative`, or `neutral` for
greetings, questions and plain facts), so moods change within a chat the way they do in real
ones: bad news, then help, then relief. The bench scores the bot's tone against the tone the
bot showed the message with (its label, or neutral); `mood` is only reported next to it.

`split` keeps tuning honest: prompts and sampling were tuned while reading the "tune" chats
only; the "report" chats were written at the same time and are only ever scored. The
"holdout" chats were written later (issue: replies that restate the user, canned phrases,
refusals), before the prompt was tuned against those faults, and are only ever scored too.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

Mood = Literal["positive", "negative", "neutral"]
Split = Literal["tune", "report", "holdout"]
SPLITS: tuple[Split, ...] = ("tune", "report", "holdout")


class Dialogue(NamedTuple):
    name: str
    language: str  # "zh" or "en"
    split: Split
    turns: tuple[tuple[str, Mood], ...]


DIALOGUES: tuple[Dialogue, ...] = (
    # --- tune ----------------------------------------------------------------------------
    Dialogue("zh-checkup", "zh", "tune", (
        ("最近体检查出一个结节，医生让我下周复查，心里一直七上八下的。", "negative"),
        ("晚上总是睡不着，老是往坏处想。", "negative"),
        ("你平时遇到烦心事会怎么转移注意力？", "neutral"),
        ("复查结果出来了，是良性的，医生说不用担心！", "positive"),
        ("今晚想约朋友吃顿好的庆祝一下。", "positive"),
        ("谢谢你这几天陪我聊天。", "positive"),
    )),
    Dialogue("zh-new-job", "zh", "tune", (
        ("你好呀，今天是我入职新公司的第一天。", "neutral"),
        ("同事们都挺友好的，还有人带我去吃了午饭。", "positive"),
        ("不过下午领导给了一个很难的任务，我完全没头绪。", "negative"),
        ("加班到九点还是没做出来，感觉自己好笨。", "negative"),
        ("明天早上九点要交，你觉得我应该先找谁请教？", "neutral"),
        ("问了师兄，他十分钟就帮我理清了思路，轻松多了！", "positive"),
    )),
    Dialogue("zh-cat", "zh", "tune", (
        ("我家猫咪今天打完疫苗了。", "neutral"),
        ("回来以后它一直躲在床底下不出来，也不吃东西。", "negative"),
        ("我有点担心它是不是生病了。", "negative"),
        ("刚刚它自己跑出来吃了小半碗猫粮！", "positive"),
        ("现在正趴在我腿上打呼噜呢。", "positive"),
        ("猫咪打完疫苗一般多久能恢复正常？", "neutral"),
    )),
    Dialogue("zh-friend", "zh", "tune", (
        ("和最好的朋友吵架了，已经三天没说话。", "negative"),
        ("起因其实很小，就是她忘了我们约好的电影。", "negative"),
        ("我是不是太小气了？", "negative"),
        ("她刚刚给我发消息道歉了，还说请我喝奶茶。", "positive"),
        ("我们约了周六一起去看那部电影。", "positive"),
        ("今天天气不错，准备出门走走。", "neutral"),
    )),
    Dialogue("en-wallet", "en", "tune", (
        ("I lost my wallet on the bus this morning.", "negative"),
        ("It had my ID, two credit cards and a photo of my grandmother.", "negative"),
        ("I've already cancelled the cards, but replacing the ID takes weeks.", "negative"),
        ("What else should I do when you lose a wallet?", "neutral"),
        ("Someone just called: the bus driver found it and kept it safe for me!", "positive"),
        ("I'm going to bake him some cookies as a thank-you.", "positive"),
    )),
    Dialogue("en-marathon", "en", "tune", (
        ("Hi! I signed up for my first marathon.", "positive"),
        ("Today's long run was 25 km and my knees are killing me.", "negative"),
        ("The race is in three weeks.", "neutral"),
        ("I'm scared I won't be able to finish it.", "negative"),
        ("My coach says my pace is actually ahead of plan!", "positive"),
        ("Any tips for the night before a race?", "neutral"),
    )),
    Dialogue("en-presentation", "en", "tune", (
        ("I have to give a presentation to the whole department tomorrow.", "neutral"),
        ("I always freeze when everyone is looking at me.", "negative"),
        ("I practised it three times tonight in front of the mirror.", "neutral"),
        ("It went really well, people even asked follow-up questions!", "positive"),
        ("My manager said I should present at the next all-hands too.", "positive"),
        ("What's a good way to celebrate a small win like this?", "neutral"),
    )),
    Dialogue("en-breakup", "en", "tune", (
        ("My girlfriend and I broke up last night.", "negative"),
        ("We were together for four years.", "negative"),
        ("The apartment feels so empty now.", "negative"),
        ("My brother came over with pizza and we watched old movies.", "positive"),
        ("Honestly I laughed more than I expected.", "positive"),
        ("How do people usually get through the first month?", "neutral"),
    )),
    # --- report: never read while tuning ------------------------------------------------
    Dialogue("zh-exam", "zh", "report", (
        ("下个月就要考研了，感觉复习不完。", "negative"),
        ("今天做了一套真题，数学只考了七十分。", "negative"),
        ("你知道怎么安排最后一个月的复习吗？", "neutral"),
        ("晚上又做了一套，数学居然考了一百一十分！", "positive"),
        ("妈妈还特地给我炖了排骨汤。", "positive"),
        ("好了，我去洗个澡早点睡。", "neutral"),
    )),
    Dialogue("zh-moving", "zh", "report", (
        ("我下周要搬去上海工作了。", "neutral"),
        ("找房子找得头都大了，押金还这么贵。", "negative"),
        ("今天中介又放了我鸽子，白跑一趟。", "negative"),
        ("终于签下了一个离公司很近的小单间，阳光特别好！", "positive"),
        ("上海有什么好吃的推荐吗？", "neutral"),
        ("第一次一个人生活，有点紧张，也有点期待。", "positive"),
    )),
    Dialogue("zh-father", "zh", "report", (
        ("爸爸昨天住院了，医生说要做个小手术。", "negative"),
        ("我请了假赶回老家，在医院陪床。", "negative"),
        ("医院的走廊好冷，一晚上都没怎么睡。", "negative"),
        ("手术很顺利，爸爸已经能下床走几步了！", "positive"),
        ("他还跟护士开玩笑，精神特别好。", "positive"),
        ("手术后一般要注意些什么饮食？", "neutral"),
    )),
    Dialogue("zh-guitar", "zh", "report", (
        ("我最近开始学吉他了。", "neutral"),
        ("手指按弦按得好疼，都起茧了。", "negative"),
        ("F和弦怎么都按不响，好挫败。", "negative"),
        ("今天终于完整弹下来一首《小星星》！", "positive"),
        ("我女儿听了还给我鼓掌，哈哈。", "positive"),
        ("你觉得下一首学什么歌比较好？", "neutral"),
    )),
    Dialogue("en-garden", "en", "report", (
        ("I planted tomatoes on my balcony this spring.", "neutral"),
        ("A storm last night snapped half of the plants.", "negative"),
        ("I'd been looking after them every day for months.", "negative"),
        ("This morning I found the first red tomato on a plant that survived!", "positive"),
        ("It tasted amazing with a bit of salt.", "positive"),
        ("Should I plant them again next year or try something easier?", "neutral"),
    )),
    Dialogue("en-newborn", "en", "report", (
        ("Our son was born two weeks ago.", "positive"),
        ("He wakes up every two hours and I'm exhausted.", "negative"),
        ("I snapped at my wife today and I feel terrible about it.", "negative"),
        ("She just told me she's proud of how I'm handling it.", "positive"),
        ("He smiled at me for the first time this afternoon!", "positive"),
        ("When do babies usually start sleeping through the night?", "neutral"),
    )),
    Dialogue("en-job-offer", "en", "report", (
        ("I got rejected from the job I really wanted.", "negative"),
        ("It was the final round, and I thought the interview went well.", "negative"),
        ("I don't know if I should keep applying in this field.", "negative"),
        ("Wait, another company just emailed me an offer!", "positive"),
        ("The salary is even better than the first one.", "positive"),
        ("I start on Monday.", "neutral"),
    )),
    Dialogue("en-new-city", "en", "report", (
        ("I moved to a new city last month for university.", "neutral"),
        ("I haven't made any friends yet and I eat dinner alone every night.", "negative"),
        ("Today nobody sat next to me in the lecture.", "negative"),
        ("A girl from my lab invited me to her board game night!", "positive"),
        ("We played until midnight and I won twice.", "positive"),
        ("Do you know any good board games for beginners?", "neutral"),
    )),
    # --- holdout: written before tuning against echo, canned phrases and refusals; never
    # read while tuning ----------------------------------------------------------------------
    Dialogue("zh-overtime", "zh", "holdout", (
        ("最近工作压力好大，每天加班到十一点，周末也要开会。", "negative"),
        ("今天又被临时拉去改方案，晚饭都没顾上吃。", "negative"),
        ("室友看我回来这么晚，给我煮了一碗面，好暖心。", "positive"),
        ("你觉得我要不要跟领导提一下工作量的问题？", "neutral"),
        ("刚跟领导聊完，他说下个月给我们组加两个人！", "positive"),
        ("这周末终于不用开会了，打算睡个懒觉。", "positive"),
    )),
    Dialogue("zh-driving", "zh", "holdout", (
        ("今天科目二又挂了，这已经是第二次了。", "negative"),
        ("教练说我倒车入库总是压线，我自己也很着急。", "negative"),
        ("科目二一般要练多久才能过？", "neutral"),
        ("今天练了一下午，连着五次都没压线！", "positive"),
        ("下周二再考一次，还是有点紧张。", "negative"),
        ("过了！终于拿到驾照了！", "positive"),
    )),
    Dialogue("en-listen", "en", "holdout", (
        ("Rough day. My sister and I had another fight about our mom's care.", "negative"),
        ("Honestly I just want someone to listen.", "negative"),
        ("She thinks I'm not doing enough, but I visit every single weekend.", "negative"),
        ("We talked again tonight and she actually apologized.", "positive"),
        ("We're going to make a schedule together so it feels fair.", "positive"),
        ("What's a good way to keep a shared calendar with family?", "neutral"),
    )),
    Dialogue("en-deadline", "en", "holdout", (
        ("My report is due at 9am tomorrow and I'm only halfway done. I'm panicking.",
         "negative"),
        ("My laptop just crashed and I lost the last hour of work.", "negative"),
        ("How do you stay focused when a deadline is this close?", "neutral"),
        ("Found an autosave file, I only lost ten minutes of work!", "positive"),
        ("Submitted it at 8:40 with twenty minutes to spare!", "positive"),
        ("Now I'm going to sleep for twelve hours.", "neutral"),
    )),
)  # fmt: skip


def dialogues(split: str = "all") -> list[Dialogue]:
    """The chats of one split ("tune", "report", "holdout"), of several joined by commas
    ("report,holdout"), or all of them."""
    chosen = set(SPLITS) if split == "all" else set(split.split(","))
    if not chosen or not chosen <= set(SPLITS):
        raise ValueError(f"unknown split {split!r}: all, tune, report, holdout or a list")
    return [d for d in DIALOGUES if d.split in chosen]
