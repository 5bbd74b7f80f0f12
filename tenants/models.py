import re

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _
from django_tenants.models import DomainMixin, TenantMixin

PREFECTURES = [
    "北海道", "青森県", "岩手県", "宮城県", "秋田県", "山形県", "福島県", "茨城県", "栃木県",
    "群馬県", "埼玉県", "千葉県", "東京都", "神奈川県", "新潟県", "富山県", "石川県", "福井県",
    "山梨県", "長野県", "岐阜県", "静岡県", "愛知県", "三重県", "滋賀県", "京都府", "大阪府",
    "兵庫県", "奈良県", "和歌山県", "鳥取県", "島根県", "岡山県", "広島県", "山口県", "徳島県",
    "香川県", "愛媛県", "高知県", "福岡県", "佐賀県", "長崎県", "熊本県", "大分県", "宮崎県",
    "鹿児島県", "沖縄県",
]


def validate_local_government_code(value: str) -> None:
    """The 6-digit 全国地方公共団体コード: 2 digits prefecture, 3 municipality, 1 check digit.

    Check digit: weights 6,5,4,3,2 over the first five digits; (11 - sum % 11) % 10.
    """
    if len(value) != 6 or not value.isascii() or not value.isdigit():
        raise ValidationError(
            _("The local government code must be 6 digits (全国地方公共団体コード)."), code="format"
        )
    if not 1 <= int(value[:2]) <= 47:
        raise ValidationError(_("The first two digits must be a prefecture number, 01 to 47."), code="prefecture")
    total = sum(int(d) * w for d, w in zip(value[:5], (6, 5, 4, 3, 2), strict=True))
    if (11 - total % 11) % 10 != int(value[5]):
        raise ValidationError(_("The check digit of the local government code is wrong."), code="check_digit")


_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalise_host_name(value: str) -> str:
    return value.strip().lower()


def validate_host_name(value: str) -> None:
    """A host name as the Host header carries it once normalised: lowercase ASCII labels
    of letters, digits and inner hyphens (IDN in its xn-- form), at least two of them, no
    port, path or final dot, and not an IP address."""
    labels = value.split(".")
    if (len(value) > 253 or len(labels) < 2 or not all(_HOST_LABEL.match(label) for label in labels)
            or labels[-1].isdigit()):
        raise ValidationError(
            _("Enter a host name such as mimamori.example.jp: letters, digits, hyphens and dots, "
              "without a port, a path or a final dot."),
            code="host_name",
        )


schema_name_validator = RegexValidator(
    r"^[a-z][a-z0-9_]{1,40}$",
    _("Use 2 to 41 lowercase letters, digits or underscores, starting with a letter."),
)


class Tenant(TenantMixin):
    """One municipality (市町村) or one social-welfare council (社会福祉協議会).

    The row of the public schema (the operators' side) leaves kind, prefecture and code
    empty; every other tenant must have them (tenants.actions.check_new_tenant).
    """

    class Kind(models.TextChoices):
        MUNICIPALITY = "municipality", _("Municipality")
        WELFARE_COUNCIL = "welfare_council", _("Social-welfare council")

    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices, blank=True)
    prefecture = models.CharField(_("prefecture"), max_length=4, choices=[(p, p) for p in PREFECTURES], blank=True)
    local_government_code = models.CharField(
        _("local government code"), max_length=6, validators=[validate_local_government_code], blank=True
    )
    time_zone = models.CharField(_("time zone"), max_length=64, default="Asia/Tokyo")
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)

    # Provisioning creates the schema explicitly (tenants.actions), never as a side
    # effect of save().
    auto_create_schema = False
    auto_drop_schema = False

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Domain(DomainMixin):
    """A host name that serves one tenant (e.g. kyotanabe.mimamori.example)."""


class Wakeup(models.Model):
    """The earliest time something in a tenant needs a timer (e.g. the first rhythm that
    can go overdue). Periodic passes read only the rows that are due, so their cost
    follows the work due, not the number of tenants. Never later than the truth: a
    stale early time costs one empty visit; a sweep recomputes every row."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="wakeups")
    purpose = models.CharField(max_length=40)
    due_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "purpose"], name="wakeup_unique_purpose")]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.purpose}@{self.due_at}"
