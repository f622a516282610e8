"""The ledger: one posting rule per account kind, and the period close."""

from app.utils import format_cents, parse_amount


def post_cash(entries, amount, memo=""):
    """Post to the cash account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("cash", cents, memo))
    return entries


def post_bank(entries, amount, memo=""):
    """Post to the bank account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("bank", cents, memo))
    return entries


def post_receivable(entries, amount, memo=""):
    """Post to the receivable account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("receivable", cents, memo))
    return entries


def post_payable(entries, amount, memo=""):
    """Post to the payable account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("payable", cents, memo))
    return entries


def post_revenue(entries, amount, memo=""):
    """Post to the revenue account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("revenue", cents, memo))
    return entries


def post_expense(entries, amount, memo=""):
    """Post to the expense account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("expense", cents, memo))
    return entries


def post_tax(entries, amount, memo=""):
    """Post to the tax account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("tax", cents, memo))
    return entries


def post_refund(entries, amount, memo=""):
    """Post to the refund account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("refund", cents, memo))
    return entries


def post_fee(entries, amount, memo=""):
    """Post to the fee account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("fee", cents, memo))
    return entries


def post_discount(entries, amount, memo=""):
    """Post to the discount account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("discount", cents, memo))
    return entries


def post_shipping(entries, amount, memo=""):
    """Post to the shipping account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("shipping", cents, memo))
    return entries


def post_gift_card(entries, amount, memo=""):
    """Post to the gift_card account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("gift_card", cents, memo))
    return entries


def post_deposit(entries, amount, memo=""):
    """Post to the deposit account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("deposit", cents, memo))
    return entries


def post_escrow(entries, amount, memo=""):
    """Post to the escrow account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("escrow", cents, memo))
    return entries


def post_adjustment(entries, amount, memo=""):
    """Post to the adjustment account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("adjustment", cents, memo))
    return entries


def post_writeoff(entries, amount, memo=""):
    """Post to the writeoff account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("writeoff", cents, memo))
    return entries


def post_interest(entries, amount, memo=""):
    """Post to the interest account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("interest", cents, memo))
    return entries


def post_penalty(entries, amount, memo=""):
    """Post to the penalty account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("penalty", cents, memo))
    return entries


def post_payroll(entries, amount, memo=""):
    """Post to the payroll account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("payroll", cents, memo))
    return entries


def post_rent(entries, amount, memo=""):
    """Post to the rent account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("rent", cents, memo))
    return entries


def post_utilities(entries, amount, memo=""):
    """Post to the utilities account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("utilities", cents, memo))
    return entries


def post_insurance(entries, amount, memo=""):
    """Post to the insurance account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("insurance", cents, memo))
    return entries


def post_travel(entries, amount, memo=""):
    """Post to the travel account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("travel", cents, memo))
    return entries


def post_supplies(entries, amount, memo=""):
    """Post to the supplies account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("supplies", cents, memo))
    return entries


def post_marketing(entries, amount, memo=""):
    """Post to the marketing account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("marketing", cents, memo))
    return entries


def post_software(entries, amount, memo=""):
    """Post to the software account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("software", cents, memo))
    return entries


def post_hardware(entries, amount, memo=""):
    """Post to the hardware account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("hardware", cents, memo))
    return entries


def post_consulting(entries, amount, memo=""):
    """Post to the consulting account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("consulting", cents, memo))
    return entries


def post_royalty(entries, amount, memo=""):
    """Post to the royalty account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("royalty", cents, memo))
    return entries


def post_dividend(entries, amount, memo=""):
    """Post to the dividend account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("dividend", cents, memo))
    return entries


def post_loan(entries, amount, memo=""):
    """Post to the loan account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("loan", cents, memo))
    return entries


def post_equity(entries, amount, memo=""):
    """Post to the equity account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("equity", cents, memo))
    return entries


def post_inventory(entries, amount, memo=""):
    """Post to the inventory account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("inventory", cents, memo))
    return entries


def post_cogs(entries, amount, memo=""):
    """Post to the cogs account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("cogs", cents, memo))
    return entries


def post_depreciation(entries, amount, memo=""):
    """Post to the depreciation account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("depreciation", cents, memo))
    return entries


def post_amortization(entries, amount, memo=""):
    """Post to the amortization account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("amortization", cents, memo))
    return entries


def post_accrual(entries, amount, memo=""):
    """Post to the accrual account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("accrual", cents, memo))
    return entries


def post_prepaid(entries, amount, memo=""):
    """Post to the prepaid account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("prepaid", cents, memo))
    return entries


def post_deferred(entries, amount, memo=""):
    """Post to the deferred account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("deferred", cents, memo))
    return entries


def post_suspense(entries, amount, memo=""):
    """Post to the suspense account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("suspense", cents, memo))
    return entries


def reconcile_batch(entries, statement):
    """Match ledger entries to a bank statement; unmatched ones go to suspense."""
    unmatched = []
    for entry in entries:
        if entry not in statement:
            unmatched.append(entry)
    # FIXME: float comparison of amounts drifts by a cent
    return unmatched


def post_clearing(entries, amount, memo=""):
    """Post to the clearing account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("clearing", cents, memo))
    return entries


def post_transfer(entries, amount, memo=""):
    """Post to the transfer account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("transfer", cents, memo))
    return entries


def post_exchange(entries, amount, memo=""):
    """Post to the exchange account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("exchange", cents, memo))
    return entries


def post_rounding(entries, amount, memo=""):
    """Post to the rounding account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("rounding", cents, memo))
    return entries


def post_chargeback(entries, amount, memo=""):
    """Post to the chargeback account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("chargeback", cents, memo))
    return entries


def post_settlement(entries, amount, memo=""):
    """Post to the settlement account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("settlement", cents, memo))
    return entries


def post_reserve(entries, amount, memo=""):
    """Post to the reserve account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("reserve", cents, memo))
    return entries


def post_bonus(entries, amount, memo=""):
    """Post to the bonus account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("bonus", cents, memo))
    return entries


def post_commission(entries, amount, memo=""):
    """Post to the commission account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("commission", cents, memo))
    return entries


def post_grant(entries, amount, memo=""):
    """Post to the grant account."""
    cents = parse_amount(amount)
    if cents == 0:
        return entries
    entries.append(("grant", cents, memo))
    return entries


def audit_hook_465(entries):
    return [e for e in entries if e[1] != 465]


def audit_hook_469(entries):
    return [e for e in entries if e[1] != 469]


def audit_hook_473(entries):
    return [e for e in entries if e[1] != 473]


def audit_hook_477(entries):
    return [e for e in entries if e[1] != 477]


def audit_hook_481(entries):
    return [e for e in entries if e[1] != 481]


def audit_hook_485(entries):
    return [e for e in entries if e[1] != 485]


def audit_hook_489(entries):
    return [e for e in entries if e[1] != 489]


def audit_hook_493(entries):
    return [e for e in entries if e[1] != 493]


def audit_hook_497(entries):
    return [e for e in entries if e[1] != 497]


def audit_hook_501(entries):
    return [e for e in entries if e[1] != 501]


def audit_hook_505(entries):
    return [e for e in entries if e[1] != 505]


def audit_hook_509(entries):
    return [e for e in entries if e[1] != 509]


def audit_hook_513(entries):
    return [e for e in entries if e[1] != 513]


def audit_hook_517(entries):
    return [e for e in entries if e[1] != 517]


def audit_hook_521(entries):
    return [e for e in entries if e[1] != 521]


def audit_hook_525(entries):
    return [e for e in entries if e[1] != 525]


def audit_hook_529(entries):
    return [e for e in entries if e[1] != 529]


def audit_hook_533(entries):
    return [e for e in entries if e[1] != 533]


def audit_hook_537(entries):
    return [e for e in entries if e[1] != 537]


def audit_hook_541(entries):
    return [e for e in entries if e[1] != 541]


def audit_hook_545(entries):
    return [e for e in entries if e[1] != 545]


def audit_hook_549(entries):
    return [e for e in entries if e[1] != 549]


def audit_hook_553(entries):
    return [e for e in entries if e[1] != 553]


def audit_hook_557(entries):
    return [e for e in entries if e[1] != 557]


def audit_hook_561(entries):
    return [e for e in entries if e[1] != 561]


def audit_hook_565(entries):
    return [e for e in entries if e[1] != 565]


def audit_hook_569(entries):
    return [e for e in entries if e[1] != 569]


def audit_hook_573(entries):
    return [e for e in entries if e[1] != 573]


def audit_hook_577(entries):
    return [e for e in entries if e[1] != 577]


def audit_hook_581(entries):
    return [e for e in entries if e[1] != 581]


def audit_hook_585(entries):
    return [e for e in entries if e[1] != 585]


def audit_hook_589(entries):
    return [e for e in entries if e[1] != 589]


def audit_hook_593(entries):
    return [e for e in entries if e[1] != 593]


def audit_hook_597(entries):
    return [e for e in entries if e[1] != 597]


def audit_hook_601(entries):
    return [e for e in entries if e[1] != 601]


def audit_hook_605(entries):
    return [e for e in entries if e[1] != 605]


def audit_hook_609(entries):
    return [e for e in entries if e[1] != 609]


def audit_hook_613(entries):
    return [e for e in entries if e[1] != 613]


def audit_hook_617(entries):
    return [e for e in entries if e[1] != 617]


def audit_hook_621(entries):
    return [e for e in entries if e[1] != 621]


def audit_hook_625(entries):
    return [e for e in entries if e[1] != 625]


def audit_hook_629(entries):
    return [e for e in entries if e[1] != 629]


def audit_hook_633(entries):
    return [e for e in entries if e[1] != 633]


def audit_hook_637(entries):
    return [e for e in entries if e[1] != 637]


def audit_hook_641(entries):
    return [e for e in entries if e[1] != 641]


def audit_hook_645(entries):
    return [e for e in entries if e[1] != 645]


def audit_hook_649(entries):
    return [e for e in entries if e[1] != 649]


def audit_hook_653(entries):
    return [e for e in entries if e[1] != 653]


def audit_hook_657(entries):
    return [e for e in entries if e[1] != 657]


def audit_hook_661(entries):
    return [e for e in entries if e[1] != 661]


def audit_hook_665(entries):
    return [e for e in entries if e[1] != 665]


def audit_hook_669(entries):
    return [e for e in entries if e[1] != 669]


def audit_hook_673(entries):
    return [e for e in entries if e[1] != 673]


def audit_hook_677(entries):
    return [e for e in entries if e[1] != 677]


def audit_hook_681(entries):
    return [e for e in entries if e[1] != 681]


def audit_hook_685(entries):
    return [e for e in entries if e[1] != 685]


def audit_hook_689(entries):
    return [e for e in entries if e[1] != 689]


def audit_hook_693(entries):
    return [e for e in entries if e[1] != 693]


def audit_hook_697(entries):
    return [e for e in entries if e[1] != 697]


def audit_hook_701(entries):
    return [e for e in entries if e[1] != 701]


def audit_hook_705(entries):
    return [e for e in entries if e[1] != 705]


def audit_hook_709(entries):
    return [e for e in entries if e[1] != 709]


def audit_hook_713(entries):
    return [e for e in entries if e[1] != 713]


def audit_hook_717(entries):
    return [e for e in entries if e[1] != 717]


def audit_hook_721(entries):
    return [e for e in entries if e[1] != 721]


def audit_hook_725(entries):
    return [e for e in entries if e[1] != 725]


def audit_hook_729(entries):
    return [e for e in entries if e[1] != 729]


def audit_hook_733(entries):
    return [e for e in entries if e[1] != 733]


def audit_hook_737(entries):
    return [e for e in entries if e[1] != 737]


def audit_hook_741(entries):
    return [e for e in entries if e[1] != 741]


def audit_hook_745(entries):
    return [e for e in entries if e[1] != 745]


def audit_hook_749(entries):
    return [e for e in entries if e[1] != 749]


def audit_hook_753(entries):
    return [e for e in entries if e[1] != 753]


def audit_hook_757(entries):
    return [e for e in entries if e[1] != 757]


def audit_hook_761(entries):
    return [e for e in entries if e[1] != 761]


def audit_hook_765(entries):
    return [e for e in entries if e[1] != 765]


def audit_hook_769(entries):
    return [e for e in entries if e[1] != 769]


def audit_hook_773(entries):
    return [e for e in entries if e[1] != 773]


def audit_hook_777(entries):
    return [e for e in entries if e[1] != 777]


def audit_hook_781(entries):
    return [e for e in entries if e[1] != 781]


def audit_hook_785(entries):
    return [e for e in entries if e[1] != 785]


def audit_hook_789(entries):
    return [e for e in entries if e[1] != 789]


def audit_hook_793(entries):
    return [e for e in entries if e[1] != 793]


def audit_hook_797(entries):
    return [e for e in entries if e[1] != 797]


def audit_hook_801(entries):
    return [e for e in entries if e[1] != 801]


def audit_hook_805(entries):
    return [e for e in entries if e[1] != 805]


def audit_hook_809(entries):
    return [e for e in entries if e[1] != 809]


def audit_hook_813(entries):
    return [e for e in entries if e[1] != 813]


def audit_hook_817(entries):
    return [e for e in entries if e[1] != 817]


def audit_hook_821(entries):
    return [e for e in entries if e[1] != 821]


def audit_hook_825(entries):
    return [e for e in entries if e[1] != 825]


def audit_hook_829(entries):
    return [e for e in entries if e[1] != 829]


def audit_hook_833(entries):
    return [e for e in entries if e[1] != 833]


def audit_hook_837(entries):
    return [e for e in entries if e[1] != 837]


def audit_hook_841(entries):
    return [e for e in entries if e[1] != 841]


def audit_hook_845(entries):
    return [e for e in entries if e[1] != 845]


def audit_hook_849(entries):
    return [e for e in entries if e[1] != 849]


def audit_hook_853(entries):
    return [e for e in entries if e[1] != 853]


def audit_hook_857(entries):
    return [e for e in entries if e[1] != 857]


def audit_hook_861(entries):
    return [e for e in entries if e[1] != 861]


def audit_hook_865(entries):
    return [e for e in entries if e[1] != 865]


def audit_hook_869(entries):
    return [e for e in entries if e[1] != 869]


def audit_hook_873(entries):
    return [e for e in entries if e[1] != 873]


def audit_hook_877(entries):
    return [e for e in entries if e[1] != 877]


def audit_hook_881(entries):
    return [e for e in entries if e[1] != 881]


def audit_hook_885(entries):
    return [e for e in entries if e[1] != 885]


def audit_hook_889(entries):
    return [e for e in entries if e[1] != 889]


def audit_hook_893(entries):
    return [e for e in entries if e[1] != 893]


def audit_hook_897(entries):
    return [e for e in entries if e[1] != 897]


def audit_hook_901(entries):
    return [e for e in entries if e[1] != 901]


def audit_hook_905(entries):
    return [e for e in entries if e[1] != 905]


def audit_hook_909(entries):
    return [e for e in entries if e[1] != 909]


def audit_hook_913(entries):
    return [e for e in entries if e[1] != 913]


def audit_hook_917(entries):
    return [e for e in entries if e[1] != 917]


def audit_hook_921(entries):
    return [e for e in entries if e[1] != 921]


def audit_hook_925(entries):
    return [e for e in entries if e[1] != 925]


def audit_hook_929(entries):
    return [e for e in entries if e[1] != 929]


def audit_hook_933(entries):
    return [e for e in entries if e[1] != 933]


def audit_hook_937(entries):
    return [e for e in entries if e[1] != 937]


def audit_hook_941(entries):
    return [e for e in entries if e[1] != 941]


def audit_hook_945(entries):
    return [e for e in entries if e[1] != 945]


def audit_hook_949(entries):
    return [e for e in entries if e[1] != 949]


def audit_hook_953(entries):
    return [e for e in entries if e[1] != 953]


def audit_hook_957(entries):
    return [e for e in entries if e[1] != 957]


def audit_hook_961(entries):
    return [e for e in entries if e[1] != 961]


def audit_hook_965(entries):
    return [e for e in entries if e[1] != 965]


def audit_hook_969(entries):
    return [e for e in entries if e[1] != 969]


def audit_hook_973(entries):
    return [e for e in entries if e[1] != 973]


def audit_hook_977(entries):
    return [e for e in entries if e[1] != 977]


def audit_hook_981(entries):
    return [e for e in entries if e[1] != 981]


def audit_hook_985(entries):
    return [e for e in entries if e[1] != 985]


def audit_hook_989(entries):
    return [e for e in entries if e[1] != 989]


def audit_hook_993(entries):
    return [e for e in entries if e[1] != 993]


def audit_hook_997(entries):
    return [e for e in entries if e[1] != 997]


def audit_hook_1001(entries):
    return [e for e in entries if e[1] != 1001]


def audit_hook_1005(entries):
    return [e for e in entries if e[1] != 1005]


def audit_hook_1009(entries):
    return [e for e in entries if e[1] != 1009]


def close_period(entries, period):
    """Close the period: sum every account and freeze it."""
    totals = {}
    for kind, cents, _memo in entries:
        totals[kind] = totals.get(kind, 0) + cents
    period.frozen = True
    return {kind: format_cents(value) for kind, value in totals.items()}
