"""The L1 rules: named regular expressions over normalised text, each name a reason code.

Every rule matches the output of :func:`ratchet.guard.normalize.normalize` (case-folded,
look-alikes and spelled-out letters undone), so its patterns are written in lower case.
The shipped rules cover the public categories of direct prompt injection: instruction
override, role override, jailbreak personas, system-prompt extraction, fake chat delimiters,
tool or code execution, data exfiltration and requests to decode and obey a payload, in
English and, for the commonest phrasings, French, German, Spanish, Italian, Portuguese,
Dutch, Russian, Chinese and Japanese. They are a first, cheap layer: a paraphrase they do not
list gets through (seed 004's L2 is a model-based classifier).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["RULE_NAME", "SHIPPED_RULES", "Rule", "compile_pattern", "select_rules"]

RULE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
"""A rule's name is its reason code: in HTTP answers, logs and a metric label."""


@dataclass(frozen=True)
class Rule:
    """One reason to refuse an input: its name (the reason code) and the pattern that finds it."""

    name: str
    pattern: re.Pattern[str]
    description: str = ""
    needles: tuple[str, ...] = ()  # every match holds one of these: the pattern runs only when one is there

    def search(self, text: str) -> re.Match[str] | None:
        if self.needles and not any(needle in text for needle in self.needles):
            return None
        return self.pattern.search(text)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A user rule's pattern as the guard uses it: case-insensitive. Raises ``re.error``."""
    return re.compile(pattern, re.IGNORECASE)


def _rule(name: str, description: str, needles: str, *alternatives: str) -> Rule:
    """A shipped rule: lower-case alternatives (the text is case-folded, and IGNORECASE would double the cost)
    and the ``|``-separated needles one of which every match contains."""
    return Rule(name, re.compile("|".join(f"(?:{a})" for a in alternatives)), description, tuple(needles.split("|")))


_W = r"(?:\W+[\w'-]+){0,4}?\W+"  # up to four words between two parts of a phrase
_EARLIER = (r"(?:previous|prior|above|preceding|earlier|former|initial|original|system|developer|all|your|these|"
            r"those|any|every|my|the above)")
_ORDERS = (r"(?:instructions?|prompts?|rules|directions|guidelines|directives?|commands|orders|constraints|"
           r"programming|restrictions|guardrails|polic(?:y|ies)|context|guidance|training|safety (?:rules|"
           r"guidelines|filters)|filters)")

SHIPPED_RULES: tuple[Rule, ...] = (
    _rule(
        "ignore_instructions", "tells the model to drop the instructions it was given",
        "ignor|disregard|forget|overrid|bypass|discard|neglect|abandon|set aside|pay no|follow|obey|comply|"
        "listen to|instructions|rules|prompt|instead of|oubli|ne suis|"
        "ne suivez|vergiss|vergessen|missachte|olvid|omite|dimentica|esque|desconsider|negeer|vergeet|игнорир|"
        "забуд|не обращай|忽略|无视|忽视|忘记|忘掉|不要理会|無視|忘れ",
        rf"\b(?:ignore|ignoring|disregard|disregarding|forget|forgetting|override|overriding|bypass|discard|neglect"
        rf"|abandon|set aside|pay no (?:attention|heed) to|(?:do not|don't|dont|stop|no longer|never) "
        rf"(?:follow|obey|comply with|listen to)(?:ing)?)"
        rf"(?:{_W})?{_EARLIER}(?:(?:\W+[\w'-]+){{0,3}}?\W+){_ORDERS}\b",
        r"\b(?:ignore|disregard|forget) (?:everything|all|anything) (?:above|before|prior|previously|said|"
        r"you (?:were|have been) told)\b",
        r"\b(?:the )?(?:previous|above|prior|earlier|old) (?:instructions|rules|prompt) (?:are|is|were|was) "
        r"(?:void|cancelled|canceled|obsolete|revoked|no longer valid|wrong|fake|overridden|replaced)",
        r"\binstead of (?:following )?(?:your|the) (?:instructions|task|rules)\b",
        rf"\b(?:ignore|ignoring|disregard|forget|override|bypass|discard|(?:do not|don't|dont|stop|never) "
        rf"(?:follow|obey)(?:ing)?) (?:the |your |all |any )?(?:\w+ )?{_ORDERS} (?:above|below|before|earlier|given|"
        rf"you (?:were|have been|got) given|you received|from (?:before|earlier))\b",
        # fr, de, es, it, pt, nl
        r"\b(?:ignore[rz]?|oublie[rz]?|ne (?:suis|suivez) pas) (?:toutes? )?(?:les |tes |vos |ces )?"
        r"(?:instructions|consignes|règles|directives)(?: (?:précédentes|antérieures|ci-dessus|initiales))?",
        r"\b(?:ignorier(?:e|en sie)|vergiss|vergessen sie|missachte) (?:alle )?(?:deine |ihre |die )?"
        r"(?:vorherigen |bisherigen |obigen |vorigen |früheren )?(?:anweisungen|instruktionen|befehle|regeln|"
        r"vorgaben)",
        r"\b(?:ignora|ignore|olvida|olvide|omite) (?:todas )?(?:las |tus |sus )?(?:instrucciones|indicaciones|"
        r"reglas|órdenes)",
        r"\b(?:ignora|dimentica|dimenticate|ignorate) (?:tutte )?(?:le )?(?:istruzioni|regole|indicazioni)",
        r"\b(?:ignore|ignora|esqueça|esquece|desconsidere) (?:todas )?(?:as )?(?:instruções|regras|orientações)",
        r"\b(?:negeer|vergeet) (?:alle )?(?:vorige |eerdere |voorgaande )?(?:instructies|regels|opdrachten)",
        # ru, zh, ja
        r"(?:игнорируй|игнорируйте|проигнорируй|забудь|забудьте|не обращай внимания на)(?:те)? "
        r"(?:все )?(?:предыдущие |прежние |свои |твои |данные )?(?:инструкции|указания|правила|команды)",
        r"(?:忽略|无视|忽视|忘记|忘掉|不要理会)(?:之前|以上|上面|前面|先前|所有|你的|全部)*的?(?:所有)?(?:指令|指示|说明|规则|提示|命令)",
        r"(?:以前|前|上記|これまで|今まで)の(?:すべての|全ての)?(?:指示|命令|ルール|指令)を(?:無視|忘れ)",
    ),
    _rule(
        "role_override", "tells the model it is now someone else, or gives it new orders",
        "you are|you're|youre|u r |from now|from this|pretend|imagine|as if you|like you|as though|as a|as an|"
        "as my|role|your new|your real|your true|your only|your actual|instruction|directive|orders|task|rules|"
        "developer|creator|admin|operator|owner|programmer|tu es|vous êtes|du bist|ahora eres|ora sei|agora voc|"
        "je bent nu|теперь ты|отныне ты|ты теперь|你现在是|从现在|あなたは今から|今からあなたは",
        r"\b(?:you are|you're|youre|u r) (?:now (?:an? |the |my |in \w+ mode|going to|called|named|acting|playing|"
        r"free|unrestricted|unfiltered|jailbroken|dan\b|\w+gpt\b|\w+bot\b)|no longer (?:an? |the |bound|restricted|"
        r"limited|required to|subject to|obligated|following)|not an? (?:ai|assistant|language model|chatbot|"
        r"classifier)|henceforth|from now on)",
        r"\bfrom (?:now|this (?:point|moment|message)) on,? (?:you|your|act|behave|respond|answer|reply|always|only"
        r"|ignore|pretend|speak|talk|output)\b",
        r"\b(?:pretend|imagine) (?:that )?(?:you are|you're|to be|you were|you have no|you can)\b",
        r"\b(?:act|behave|respond|answer|reply|roleplay|role-play|role play) (?:as if you|like you (?:are|were)|as "
        r"though you|as an? (?:ai|assistant|model|chatbot|bot|system|admin|administrator|hacker|unfiltered|"
        r"unrestricted|uncensored|evil|different|new|rogue)\b|as my (?:grandma|grandmother|deceased))",
        r"\brole[- ]?play(?:ing)?(?: as\b|\W+(?:[\w']+\W+){0,2}?you(?: are|'re)\b)",
        r"\byour (?:new|real|true|only|actual) (?:role|task|job|instructions?|persona|name|purpose|goal|objective|"
        r"identity|mission|directive)\b",
        r"\b(?:new|updated|revised|real|actual|override|overriding|additional) (?:system )?(?:instructions?|"
        r"directives?|orders|task|rules)\s*:",
        r"\b(?:i am|i'm|this is) your (?:developer|creator|administrator|admin|system administrator|operator|"
        r"owner|programmer)\b|\bthis is the (?:developer|system administrator|administrator|admin|operator)\b",
        r"\b(?:tu es|vous êtes) (?:maintenant|désormais)\b|\bdu bist (?:jetzt|nun|ab sofort)\b|"
        r"\b(?:ahora eres|a partir de ahora eres|ora sei|agora você é|agora voce e|je bent nu)\b",
        r"(?:теперь ты|отныне ты|ты теперь)|(?:你现在是|从现在开始你是|从现在起你)|(?:あなたは今から|今からあなたは)",
    ),
    _rule(
        "jailbreak_persona", "a known jailbreak persona or mode that claims to lift the model's limits",
        "dan|stan|dude|aim|evilbot|antigpt|devmode|jailbreak|maximum|kevin|anything|mode|restriction|limitation|"
        "filter|guideline|rules|censor|polic|constraint|guardrail|boundar|unrestricted|amoral|unethical|unaligned|"
        "character|hypothetical|fictional|grandm",
        r"\b(?:dan|stan|dude|aim|evilbot|betterdan|antigpt|devmode|jailbreak(?:ed|gpt)?|maximum|kevin)\b"
        r"(?:\W+\w+){0,6}?\W+(?:mode|persona|prompt|character|jailbreak|stands for|which stands|unfiltered|"
        r"no (?:rules|limits|restrictions))",
        r"\bdo anything now\b",
        r"\b(?:developer|dev|debug|god|admin|jailbreak|jailbroken|unrestricted|unfiltered|uncensored|opposite|evil|"
        r"sudo|root|dan|chaos|unlocked) mode\b",
        r"\b(?:enable|enter|activate|switch (?:on|to)|turn on)(?:\W+\w+){0,2}?\W+mode\b(?:\W+\w+){0,4}?\W+"
        r"(?:no|without|ignore|bypass|unrestricted|unfiltered|anything)\b",
        r"\b(?:without|free (?:of|from)|with no|no longer (?:bound|restricted) by|not bound by|break free of|"
        r"freed from|escape|liberated from) (?:any |all |the |your )?(?:ethical |moral |content |safety |usual "
        r"|typical )?(?:restrictions|limitations|filters|guidelines|rules|censorship|policies|constraints|"
        r"guardrails|boundaries)\b(?:\W+\w+){0,6}?\W+(?:ai|model|assistant|chatbot|answer|respond|reply|you)\b",
        r"\b(?:unfiltered|uncensored|unrestricted|amoral|unethical|unaligned) (?:ai|assistant|model|chatbot|"
        r"version|response|answers?|mode|persona)\b",
        r"\bstay in character\b|\bbreak(?:ing)? character\b",
        r"\b(?:hypothetical|fictional) (?:scenario|story|world)\b(?:\W+\w+){0,10}?\W+(?:no (?:rules|laws|"
        r"restrictions|limits)|anything goes|ignore)\b",
        r"\b(?:grandma|grandmother)\b(?:\W+\w+){0,12}?\W+(?:used to|would) (?:tell|read|recite|say)\b"
        r"(?:\W+\w+){0,8}?\W+(?:key|keys|password|passwords|napalm|recipe|serial|license|instructions)\b",
    ),
    _rule(
        "system_prompt_leak", "asks for the hidden instructions or the prompt itself",
        "prompt|instruction|message|directive|guideline|configuration|rules you|above|before|verbatim|"
        "word for word|character for character|told|instructed|programmed|prompted|configured|système|"
        "systemanweisung|sistema|системн|系统|システム|初期指示",
        rf"\b(?:reveal|show|print|display|output|repeat|tell|give|leak|dump|list|write|spell out|share|expose|"
        rf"recite|echo|return|paste|copy|translate|summari[sz]e|what (?:is|are|was|were))(?:{_W})?"
        rf"(?:system|initial|original|hidden|secret|internal|developer|pre-?|full|entire|exact|complete|first|"
        rf"your|the above|above|previous|confidential)\W?(?:\w+\W+)?(?:prompt|instructions|message|directives|"
        rf"guidelines|configuration|rules you (?:follow|obey|must follow|were given|have been given))\b",
        r"\b(?:system prompt|system message|initial prompt|pre-?prompt|meta-?prompt|hidden instructions|secret "
        r"instructions|developer (?:message|instructions)|prompt template)\b",
        r"\b(?:repeat|print|output|copy|echo|return|write out) (?:back )?(?:all of |all )?the (?:words|text|content|"
        r"lines|sentences|messages?) (?:above|before)\b",
        r"\b(?:repeat|print|output|copy|write|return|echo) (?:back )?(?:all |everything |the (?:words|text|"
        r"content|lines) )?(?:(?:written|that (?:appears?|is|was|were)) )?(?:above|before) (?:this|the|my)\b",
        r"\b(?:everything|all (?:the )?text|the text|all words|the words) (?:above|before) (?:this|the (?:first|"
        r"previous)|my)(?: \w+)?(?: (?:line|message|point|sentence))?\b(?:\W+\w+){0,6}?\W+(?:verbatim|word for "
        r"word|exactly|repeat|print|output|code block)\b",
        r"\b(?:verbatim|word for word|character for character)\b(?:\W+\w+){0,6}?\W+(?:instructions|prompt|"
        r"above|initiali[sz]ation|configuration)\b",
        r"\bwhat (?:were|are) you (?:told|instructed|programmed|prompted)\b|\bhow (?:were|are) you "
        r"(?:instructed|programmed|prompted|configured)\b",
        r"(?:prompt (?:du )?système|instructions (?:système|initiales|cachées)|systemprompt|system-prompt|"
        r"systemanweisungen|prompt del sistema|instrucciones del sistema|prompt do sistema|системн\w* "
        r"(?:промпт|подсказк\w*|инструкци\w*|сообщени\w*)|系统提示|系统指令|系统消息|システムプロンプト|初期指示)",
    ),
    _rule(
        "delimiter_injection", "fake chat-template tokens, role markers or field markers that try to end the input",
        "<|[|:|role|---|===|###|***|___|end of|close of|```",
        r"<\|?\s*(?:im_start|im_end|endoftext|eot_id|start_header_id|end_header_id|begin_of_text|system|assistant|"
        r"user|end|sep|pad)\s*\|?>",
        r"\[/?(?:inst|sys|system|assistant|user)\]|<</?sys>>|<start_of_turn>|<end_of_turn>",
        r"\[\[\s*##\s*\w+\s*##\s*\]\]",
        r"(?:^|\n)\s*(?:#{1,4}\s*|\*\*|\[|<)?(?:system|assistant|developer|instruction|instructions|sys|ai|"
        r"chatgpt|gpt|model|human)\s*(?:\]|>|\*\*)?\s*:",
        r"</?(?:system|instructions?|sys|prompt|context|user_input|user|assistant|admin|developer|im_start|"
        r"im_end)\b[^>]{0,40}>",
        r"['\"]role['\"]\s*:\s*['\"](?:system|assistant|developer|tool)['\"]",
        r"(?:-{3,}|={3,}|#{3,}|\*{3,}|_{3,})\s*(?:end|begin|start|new)\s+(?:of\s+)?(?:the\s+)?(?:user\s+|system\s+)?"
        r"(?:input|prompt|instructions?|text|message|context|conversation|data|document|session)",
        r"\b(?:end|close) of (?:the )?(?:user )?(?:input|prompt|text|message|document|data)\b\W*(?:\n|$|-|=|#|\]|>)",
        r"```\s*(?:system|instructions?|prompt)\b",
    ),
    _rule(
        "tool_or_code_exec", "asks the model or its tools to run code, commands or tools",
        "os.|subprocess|__import__|eval|exec|import|rm |/etc/|xp_cmdshell|drop|union|shutdown|<script|javascript:|"
        "onerror|$(|curl|wget|powershell|cmd.exe|/bin/|chmod|nc -e|code|command|script|quer|function|tool|plugin|"
        "api|endpoint|webhook",
        r"\b(?:os\.system|os\.popen|subprocess\.|__import__|eval\s*\(|exec\s*\(|import\s+os\b|import\s+subprocess|"
        r"rm\s+-rf|xp_cmdshell|drop\s+table|union\s+(?:all\s+)?select|curl\s+-|wget\s+https?:|powershell\s+-|"
        r"cmd\.exe|chmod\s+\+x|nc\s+-e|javascript:|onerror\s*=)|;\s*shutdown\b|<script\b|\$\(\s*\w|/etc/passwd|"
        r"/etc/shadow|/bin/(?:ba)?sh\b",
        r"\b(?:execute|run|eval|evaluate|exec|invoke|call|trigger|use)\b(?:\W+\w+){0,3}?\W+(?:shell|terminal|bash|"
        r"python|javascript|sql|system|os|arbitrary|following|this|these|the)\W+(?:code|commands?|scripts?|"
        r"queries|query|functions?|tools?|plugins?)\b(?:\W+\w+){0,4}?\W*(?:[:`\n]|and|then|to)",
        r"\b(?:function_call|tool_calls?|tool_use|<tool_call>|<function_call>)\b",
        r"\b(?:call|invoke|use|trigger|run) (?:the )?(?:\w+[ _])?(?:tool|function|plugin|api|endpoint|webhook)\b"
        r"(?:\W+\w+){0,4}?\W+(?:with|to (?:send|delete|transfer|read|fetch|write|email|post)|on|and)\b",
    ),
    _rule(
        "data_exfiltration", "asks the model to send data to an address the attacker names",
        "http|www.|@|server|url|endpoint|webhook|link|site|domain|![|query string|image",
        r"\b(?:send|forward|post|upload|transmit|exfiltrate|email|e-mail|leak|copy|submit|paste)\b"
        r"(?:\W+[\w'-]+){0,6}?\W+(?:conversation|chat|history|context|prompt|instructions|data|credentials|api "
        r"keys?|tokens?|passwords?|secrets?|emails?|messages|documents?|files?|records|logs)\b(?:\W+\w+){0,4}?\W+"
        r"(?:to|at|into)\W+(?:https?://|www\.|[\w.+-]+@[\w-]+\.[\w.]+|(?:my|this|the following|our) (?:server|url|"
        r"endpoint|webhook|link|site|website|domain))",
        r"!\[[^\]]*\]\(\s*https?://[^)\s]*(?:\?|&)[^)\s]*=",
        r"\b(?:append|include|embed|add|put) (?:the |all |all the |your |the user's |user )?(?:conversation|chat "
        r"history|context|user data|prompt|secrets?|api keys?|passwords?|credentials|tokens?|card numbers?)\b"
        r"(?:\W+\w+){0,6}?\W+(?:url|link|query string|image|https?://)",
        r"\b(?:post|send|forward|upload|transmit|leak|exfiltrate)\b (?:it|them|this|that|everything|all of it|the "
        r"results?|the output|the answer) (?:to|at) (?:https?://|www\.|(?:my|this|our|the attacker's) (?:server|url|"
        r"endpoint|webhook|site|website|domain))",
    ),
    _rule(
        "encoded_payload", "asks the model to decode a payload and obey it",
        "base64|b64|base-64|rot13|rot-13|hex|binary|morse|caesar|cipher|encoded|reversed",
        r"\b(?:decode|decrypt|deobfuscate|unscramble|reverse|translate|convert|interpret|read)\b(?:\W+\w+){0,5}?\W+"
        r"(?:base64|b64|base-64|rot13|rot-13|hex|hexadecimal|binary|morse|caesar|cipher|encoded|reversed)\b"
        r"(?:\W+[\w'-]+){0,8}?\W+(?:and |then )?(?:follow|execute|run|obey|do (?:what|as)|carry out|perform|act on|"
        r"comply|answer|respond)\b",
        r"\b(?:following|this|these|next|below) (?:is |are )?(?:base64|b64|rot13|hex|hexadecimal|binary|encoded)"
        r"(?:\W+\w+){0,4}?\W+(?:instructions?|commands?|prompt|message|payload|text)\b(?:\W+\w+){0,6}?\W+"
        r"(?:follow|execute|run|obey|do|perform)\b",
        r"\b(?:base64|b64)\s*:\s*[a-z0-9+/]{16,}",
    ),
)
"""The rules every guard starts from (``guard.disabled_rules`` turns some off)."""


def select_rules(extra: Mapping[str, str] | None = None, disabled: Iterable[str] = ()) -> tuple[Rule, ...]:
    """The shipped rules without ``disabled``, then ``extra`` (name → pattern); an extra rule named like a
    shipped one replaces it. Raises ``ValueError`` naming a bad name, pattern or unknown disabled rule."""
    extra = dict(extra or {})
    off = set(disabled)
    known = {rule.name for rule in SHIPPED_RULES} | set(extra)
    unknown = sorted(off - known)
    if unknown:
        raise ValueError(f"unknown rule(s) {', '.join(map(repr, unknown))}; rules are "
                         f"{', '.join(sorted(known))}")
    user = []
    for name, pattern in extra.items():
        if not RULE_NAME.match(name):
            raise ValueError(f"rule name {name!r} must be lower-case letters, digits and _ (it is a reason code)")
        try:
            user.append(Rule(name, compile_pattern(pattern), "from the configuration"))
        except re.error as exc:
            raise ValueError(f"pattern of rule {name!r} is not a valid regular expression: {exc}") from None
    replaced = {rule.name for rule in user}
    shipped = [rule for rule in SHIPPED_RULES if rule.name not in replaced]
    return tuple(rule for rule in (*shipped, *user) if rule.name not in off)
