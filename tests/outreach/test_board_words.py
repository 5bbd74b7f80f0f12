"""What the concerns board and a concern's page say: status words in Japanese, urgent
concerns first and marked, phones to call, confirmation before dismissing."""
from http import HTTPStatus

import pytest

from outreach import actions
from outreach.models import Concern
from tenants.context import tenant_scope
from tests.conftest import HOST_A, TenantClient
from tests.watch.conftest import make_resident


@pytest.fixture
def ja_client(tenant_a):
    return TenantClient(HOST_A, language="ja")


def raise_(resident, cause="worried_contact", **kw):
    with tenant_scope("tenant_a"):
        return actions.do_raise_concern(resident=resident, cause=cause, **kw)[0]


def test_an_open_concern_is_shown_as_mitaiou_and_never_as_hiraku(team, hanako, ja_client):
    raise_(hanako)
    ja_client.sign_in("area-staff")
    page = ja_client.get("/outreach/").content.decode()
    assert "未対応" in page and "開く" not in page


def test_status_words_of_acknowledged_resolved_and_dismissed_concerns(team, hanako, areas_a, ja_client):
    acknowledged = raise_(hanako)
    with tenant_scope("tenant_a"):
        actions.do_acknowledge_concern(concern=acknowledged, actor=team["staff"])
        other = make_resident(areas_a["block"], "髙橋 茂")
    dismissed = raise_(other)
    with tenant_scope("tenant_a"):
        actions.do_close_concern(concern=dismissed, actor=team["staff"], state="dismissed", note="入院中と確認")
    ja_client.sign_in("area-staff")
    page = ja_client.get("/outreach/").content.decode()
    assert "対応中" in page and "取り下げ" in page and "問題なし" not in page


def test_an_urgent_concern_sorts_first_and_is_labelled_not_only_by_colour(team, hanako, areas_a, ja_client):
    with tenant_scope("tenant_a"):
        other = make_resident(areas_a["block"], "髙橋 茂")
    urgent = raise_(hanako, cause="device_call_request")  # urgent by its cause
    newer = raise_(other)  # high, and newer: would come first by age alone
    ja_client.sign_in("area-staff")
    page = ja_client.get("/outreach/").content.decode()
    assert page.index(f'data-concern="{urgent.pk}"') < page.index(f'data-concern="{newer.pk}"')
    row = page[page.index(f'data-concern="{urgent.pk}"'):page.index(f'data-concern="{newer.pk}"')]
    assert 'data-testid="urgent"' in row and "緊急" in row and "<svg" in row
    assert 'data-testid="urgent"' not in page[page.index(f'data-concern="{newer.pk}"'):]


def test_the_concern_page_offers_the_residents_phones_to_call_and_the_full_area(team, hanako, ja_client):
    with tenant_scope("tenant_a"):
        type(hanako).objects.filter(pk=hanako.pk).update(phone="０７７４－６２－１２３４", mobile_phone="090-1111-2222")
    concern = raise_(hanako)
    ja_client.sign_in(team["volunteer"].username)
    page = ja_client.get(f"/outreach/concerns/{concern.pk}/").content.decode()
    assert 'href="tel:0774621234"' in page and 'href="tel:09011112222"' in page
    assert "大住 › 大住ヶ丘連合自治会 › 3班" in page
    assert f"<title>{hanako.name}さんの気がかり" in page


def test_dismissing_needs_the_confirmation_box_and_saves_nothing_without_it(team, hanako, ja_client):
    concern = raise_(hanako)
    ja_client.sign_in("area-staff")
    url = f"/outreach/concerns/{concern.pk}/close/"
    response = ja_client.post(url, {"state": "dismissed", "note": "入院中と確認"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    page = response.content.decode()
    assert "対応不要であることを確認するチェックを入れてください。" in page and "入院中と確認" in page
    with tenant_scope("tenant_a"):
        assert Concern.objects.get(pk=concern.pk).state == "open"
    ja_client.post(url, {"state": "dismissed", "note": "入院中と確認", "confirm": "1"})
    with tenant_scope("tenant_a"):
        assert Concern.objects.get(pk=concern.pk).state == "dismissed"


def test_a_missing_note_is_shown_next_to_the_resolve_field(team, hanako, client_a):
    concern = raise_(hanako)
    client_a.sign_in("area-staff")
    response = client_a.post(f"/outreach/concerns/{concern.pk}/close/", {"state": "resolved", "note": " "})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    form = response.content.decode().split('data-testid="resolve"')[1].split("</form>")[0]
    assert "Say what was done or found." in form


def test_the_notification_centre_shows_the_acknowledgement_link_as_a_button(team, hanako, client_a,
                                                                           django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        raise_(hanako)  # the first step notifies the volunteer, with a one-time link
    client_a.sign_in(team["volunteer"].username)
    page = client_a.get("/notifications/").content.decode()
    assert 'data-testid="ack"' in page and 'action="/outreach/ack/' in page
    assert "http://" not in page.split('data-testid="notifications"')[1]
