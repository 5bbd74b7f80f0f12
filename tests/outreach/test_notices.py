"""The electronic circular board (電子回覧板): who may post where, one receipt per
household, LINE delivery through the fake LINE server (once, even when a batch is sent
again), reading by the household's link as a sign of life, attendance and votes, the
officer's tallies within what they may see, and isolation from tenant B."""
from datetime import timedelta
from email.header import decode_header, make_header
from http import HTTPStatus

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from outreach import board
from outreach.models import Notice, NoticeAttachment, NoticeReceipt
from tenants.accounts.models import User
from tenants.context import tenant_scope
from tests.conftest import HOST_A, HOST_B, TenantClient, make_user
from tests.notifications.conftest import fake_providers  # noqa: F401 - the fake LINE server
from tests.watch.conftest import attach, make_resident
from watch.models import Channel, ContactLog, Resident

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
def officer(areas_a):
    """An officer of 大住ヶ丘連合自治会 (and so of its 3班)."""
    user = make_user("tenant_a", "officer-a", User.Role.ASSOCIATION_OFFICER)
    attach(user, areas_a["assoc"])
    return user


@pytest.fixture
def kodo_staff(areas_a):
    user = make_user("tenant_a", "kodo-staff", User.Role.MUNICIPAL_STAFF)
    attach(user, areas_a["kodo"])
    return user


@pytest.fixture
def town(areas_a, hanako, shigeru):
    """In 3班: 花子 alone, the 佐藤 household of two (the second one on LINE), a paused
    resident, and 鈴木 who did not agree to share with the association; in 興戸: 茂 and
    an English-speaking resident on LINE."""
    with tenant_scope("tenant_a"):
        block, kodo = areas_a["block"], areas_a["kodo"]
        sato_1 = make_resident(block, "佐藤 一郎", address="大住ヶ丘1-2-3", postal_code="610-0351")
        sato_2 = make_resident(block, "佐藤 花", address="大住ヶ丘 1-2-3", postal_code="610-0351")
        paused = make_resident(block, "休止 中", status=Resident.Status.PAUSED)
        suzuki = make_resident(block, "鈴木 次郎", share=False)
        emma = make_resident(kodo, "Emma Brown", language="en")
        Resident.objects.filter(pk=sato_2.pk).update(line_user_id="U" + "2" * 32)
        Resident.objects.filter(pk=emma.pk).update(line_user_id="U" + "e" * 32)
    return {"hanako": hanako, "shigeru": shigeru, "sato_1": sato_1, "sato_2": sato_2, "paused": paused,
            "suzuki": suzuki, "emma": emma}


def post(author, areas, **fields):
    with tenant_scope("tenant_a"):
        return board.do_post_notice(author, title=fields.pop("title", "夏祭りのお知らせ"),
                                    body=fields.pop("body", "8月1日に公園で夏祭りを行います。"),
                                    area_ids=[a.pk for a in areas], **fields)


def token_of(notice, resident):
    with tenant_scope("tenant_a"):
        return board.receipt_token(NoticeReceipt.objects.get(notice=notice, resident=resident))


def receipt(notice, resident):
    with tenant_scope("tenant_a"):
        return NoticeReceipt.objects.get(notice=notice, resident=resident)


def nothing_saved():
    with tenant_scope("tenant_a"):
        return not Notice.objects.exists() and not NoticeAttachment.objects.exists() \
            and not NoticeReceipt.objects.exists()


def form(areas=(), **fields):
    return {"title": "回覧", "body": "本文", "areas": [a.pk for a in areas], "reply": "", **fields}


# Posting -----------------------------------------------------------------------------

def test_a_notice_without_an_area_is_refused_in_english_and_japanese_and_nothing_is_saved(town, officer):
    for language, words in (("en", "Choose at least one area"), ("ja", "配布する地域を1つ以上選んでください")):
        client = TenantClient(HOST_A, language=language)
        client.sign_in("officer-a")
        response = client.post("/outreach/notices/new/", {
            **form(), "attachments": [SimpleUploadedFile("map.pdf", PDF, "application/pdf")]})
        assert response.status_code == HTTPStatus.BAD_REQUEST
        assert words in response.content.decode()
    assert nothing_saved()


def test_an_officer_cannot_post_to_an_area_outside_their_association(town, officer, areas_a, client_a):
    client_a.sign_in("officer-a")
    response = client_a.post("/outreach/notices/new/", form([areas_a["block"], areas_a["kodo"]]))
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "only to the areas you look after" in response.content.decode()
    assert nothing_saved()


def test_staff_attached_to_one_district_cannot_post_to_another(town, kodo_staff, areas_a, client_a):
    client_a.sign_in("kodo-staff")
    assert client_a.post("/outreach/notices/new/", form([areas_a["osumi"]])).status_code == HTTPStatus.BAD_REQUEST
    assert nothing_saved()
    response = client_a.post("/outreach/notices/new/", form([areas_a["kodo"]]))
    assert response.status_code == HTTPStatus.FOUND


def test_an_attachment_too_big_or_not_a_pdf_or_image_is_refused_and_nothing_is_saved(town, officer, areas_a,
                                                                                   client_a, settings):
    settings.NOTICE_ATTACHMENT_MAX_BYTES = 1000
    client_a.sign_in("officer-a")
    big = SimpleUploadedFile("big.pdf", PDF + b"x" * 1000, "application/pdf")
    response = client_a.post("/outreach/notices/new/", {**form([areas_a["block"]]), "attachments": [big]})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "“big.pdf” is too big" in response.content.decode()
    script = SimpleUploadedFile("map.pdf", b"<script>alert(1)</script>", "application/pdf")
    response = client_a.post("/outreach/notices/new/", {**form([areas_a["block"]]), "attachments": [script]})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "is not a PDF or an image" in response.content.decode()
    assert nothing_saved()


def test_a_vote_needs_two_to_five_different_choices(town, officer, areas_a, client_a):
    client_a.sign_in("officer-a")
    response = client_a.post("/outreach/notices/new/", form([areas_a["block"]], reply="vote", option_1="A"))
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "A vote needs 2 to 5 choices" in response.content.decode()
    assert nothing_saved()


def test_the_form_offers_only_the_areas_the_author_may_post_to_and_keeps_what_was_typed(town, officer, areas_a,
                                                                                        client_a):
    client_a.sign_in("officer-a")
    page = client_a.get("/outreach/notices/new/").content.decode()
    assert f'value="{areas_a["block"].pk}"' in page and f'value="{areas_a["kodo"].pk}"' not in page
    response = client_a.post("/outreach/notices/new/", form([areas_a["block"]], reply="vote", option_1="土曜",
                                                            option_2="土曜", title_en="Festival"))
    assert response.status_code == HTTPStatus.BAD_REQUEST
    page = response.content.decode()
    assert "Each choice of the vote must be different." in page
    assert 'value="土曜"' in page and 'value="Festival"' in page and f'value="{areas_a["block"].pk}" checked' in page


def test_a_volunteer_cannot_use_the_circular_board(town, volunteer_a, client_a):
    client_a.sign_in("volunteer-a")
    assert client_a.get("/outreach/notices/").status_code == HTTPStatus.FORBIDDEN
    assert client_a.post("/outreach/notices/new/", form()).status_code == HTTPStatus.FORBIDDEN


# Publishing and delivery --------------------------------------------------------------

def test_publishing_creates_one_receipt_per_household_of_the_active_residents(town, officer, areas_a, client_a):
    client_a.sign_in("officer-a")
    response = client_a.post("/outreach/notices/new/", {
        **form([areas_a["assoc"], areas_a["block"]]), "attachments": [SimpleUploadedFile("map.pdf", PDF)]})
    assert response.status_code == HTTPStatus.FOUND
    with tenant_scope("tenant_a"):
        notice = Notice.objects.get()
        receipts = {r.resident_id: r for r in NoticeReceipt.objects.filter(notice=notice)}
        assert notice.attachments.get().content_type == "application/pdf"
    # The 佐藤 household once, on its first resident, by LINE through its second; nobody paused or in 興戸.
    assert set(receipts) == {town["hanako"].pk, town["sato_1"].pk, town["suzuki"].pk}
    assert receipts[town["sato_1"].pk].sent_via == "line"
    assert receipts[town["sato_1"].pk].line_user_id == "U" + "2" * 32
    assert receipts[town["hanako"].pk].sent_via == "paper"
    assert response["Location"] == f"/outreach/notices/{notice.pk}/"


def test_line_households_see_the_notice_once_in_their_language_even_when_a_batch_is_sent_again(
        town, admin_a, areas_a, fake_providers, django_capture_on_commit_callbacks):  # noqa: F811 - imported above
    from outreach.tasks import send_notice

    fake_providers.fail(1, status=500, path="/v2/bot/message/multicast")  # the first try fails: tried again
    with django_capture_on_commit_callbacks(execute=True):
        notice = post(admin_a, [areas_a["osumi"], areas_a["kodo"]],
                      translations={"en": {"title": "Summer festival", "body": "On 1 August in the park."}})
    sato, emma = "U" + "2" * 32, "U" + "e" * 32
    assert [m["text"].splitlines()[0] for m in fake_providers.shown_to(sato)] == ["電子回覧板: 夏祭りのお知らせ"]
    assert [m["text"].splitlines()[0] for m in fake_providers.shown_to(emma)] == ["Circular board: Summer festival"]
    assert "On 1 August in the park." in fake_providers.shown_to(emma)[0]["text"]
    assert receipt(notice, town["sato_1"]).sent_at is not None
    # The worker died after LINE took the batches, before marking them: the run again shows nothing twice.
    with tenant_scope("tenant_a"):
        NoticeReceipt.objects.filter(notice=notice).update(sent_at=None)
    send_notice.delay("tenant_a", notice.pk)
    assert len(fake_providers.shown_to(sato)) == 1 and len(fake_providers.shown_to(emma)) == 1
    assert receipt(notice, town["emma"]).sent_at is not None
    multicasts = fake_providers.to("/v2/bot/message/multicast")
    assert len(multicasts) == 5  # the failed one, one per language, the two repeats (409)
    assert all(len(r.json()["to"]) == 1 for r in multicasts)


def test_a_notice_whose_send_task_was_lost_is_sent_by_the_sweep_once(
        town, officer, areas_a, fake_providers):  # noqa: F811 - imported above
    from outreach.tasks import send_waiting_notices

    notice = post(officer, [areas_a["block"]])  # its task never runs: the commit's callbacks are dropped here
    assert fake_providers.shown_to("U" + "2" * 32) == []
    assert send_waiting_notices.delay("tenant_a").get() == 0  # not yet: the task may still come
    with tenant_scope("tenant_a"):
        Notice.objects.filter(pk=notice.pk).update(published_at=timezone.now() - timedelta(minutes=10))
    assert send_waiting_notices.delay("tenant_a").get() == 1
    assert send_waiting_notices.delay("tenant_a").get() == 0
    assert len(fake_providers.shown_to("U" + "2" * 32)) == 1
    # After 20 hours LINE may have forgotten the retry key: what still waits goes on paper.
    with tenant_scope("tenant_a"):
        Notice.objects.filter(pk=notice.pk).update(published_at=timezone.now() - timedelta(hours=21))
        NoticeReceipt.objects.filter(notice=notice).update(sent_at=None)
    assert send_waiting_notices.delay("tenant_a").get() == 0
    assert receipt(notice, town["sato_1"]).sent_via == "paper"
    assert len(fake_providers.shown_to("U" + "2" * 32)) == 1


def test_without_line_set_up_the_line_households_go_on_paper(town, officer, areas_a, settings,
                                                             django_capture_on_commit_callbacks):
    settings.LINE_CHANNEL_ACCESS_TOKEN = ""
    with django_capture_on_commit_callbacks(execute=True):
        notice = post(officer, [areas_a["block"]])
    assert receipt(notice, town["sato_1"]).sent_via == "paper"



@pytest.fixture
def smtp(settings):
    """The fake SMTP server, and Django's mail pointed at it through the platform's backend."""
    from tests.notifications.conftest import serve_fake_smtp

    fakes = serve_fake_smtp()
    fake = next(fakes)
    settings.EMAIL_BACKEND = "notifications.mail.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = fake.host, fake.port
    yield fake
    fakes.close()


def test_a_household_without_line_gets_the_notice_by_email_once_with_its_own_link(
        town, officer, areas_a, smtp, client_a, fake_providers, resident_b,  # noqa: F811
        django_capture_on_commit_callbacks):
    from outreach.tasks import send_notice

    with tenant_scope("tenant_b"):  # another municipality's household gets nothing of tenant A's board
        Resident.objects.filter(pk=resident_b.pk).update(email="tenant-b-family@example.jp")
    with tenant_scope("tenant_a"):
        Resident.objects.filter(pk=town["hanako"].pk).update(email="hanako-family@example.jp")
        Resident.objects.filter(pk=town["sato_1"].pk).update(email="sato@example.jp")  # the 佐藤 have LINE
    with django_capture_on_commit_callbacks(execute=True):
        notice = post(officer, [areas_a["block"]])
    [message] = smtp.messages
    subject = str(make_header(decode_header(message["Subject"])))
    assert message["To"] == "hanako-family@example.jp" and subject == "電子回覧板: 夏祭りのお知らせ"
    assert message["Message-ID"] == f"<notice-{notice.pk}-{receipt(notice, town['hanako']).pk}@{HOST_A}>"
    text = message.get_payload(decode=True).decode()
    assert "8月1日に公園で夏祭りを行います。" in text
    hanako = receipt(notice, town["hanako"])
    assert (hanako.sent_via, hanako.email, receipt(notice, town["sato_1"]).sent_via) == (
        "email", "hanako-family@example.jp", "line")
    assert hanako.sent_at is not None and len(fake_providers.shown_to("U" + "2" * 32)) == 1
    send_notice.delay("tenant_a", notice.pk)  # a second run sends nothing again
    assert len(smtp.messages) == 1
    # The link in the email is the household's: opening it marks the notice read.
    link = text.split(HOST_A, 1)[1].split()[0]
    assert client_a.get(link).status_code == HTTPStatus.OK
    assert receipt(notice, town["hanako"]).read_at is not None


def test_an_address_the_mail_server_refuses_goes_on_paper_and_a_server_failure_is_tried_again(
        town, officer, areas_a, smtp, django_capture_on_commit_callbacks):
    from outreach.tasks import send_notice

    with tenant_scope("tenant_a"):
        Resident.objects.filter(pk=town["hanako"].pk).update(email="hanako-family@example.jp")
        Resident.objects.filter(pk=town["suzuki"].pk).update(email="nobody@example.jp")
    smtp.refuse(1, 451)  # the server cannot take mail for now
    notice = post(officer, [areas_a["block"]])  # its task's callbacks dropped: run by hand below
    # The last attempt: both on paper (and the 佐藤 too: LINE is not set up in this test).
    assert send_notice.delay("tenant_a", notice.pk, 4).get()["paper"] == 3
    assert smtp.messages == []
    with tenant_scope("tenant_a"):
        NoticeReceipt.objects.filter(notice=notice, resident__in=[town["hanako"], town["suzuki"]]).update(
            sent_via="email")
    smtp.refuse(1, 550, command="RCPT")  # 花子's address (the first receipt) does not exist
    result = send_notice.delay("tenant_a", notice.pk).get()
    assert (result["sent"], result["paper"], result["retry"]) == (1, 1, False)
    assert receipt(notice, town["hanako"]).sent_via == "paper"
    assert [m["To"] for m in smtp.messages] == ["nobody@example.jp"]


def test_a_residents_email_that_is_not_one_is_refused_in_both_languages_and_nothing_is_saved(
        hanako, staff_a, client_a):
    from tests.conftest import TenantClient

    for language, words in (("en", "Enter a valid email address."), ("ja", "有効なメールアドレスを入力してください。")):
        client = TenantClient(HOST_A, language=language)
        client.sign_in("staff-a")
        page = client.get(f"/watch/residents/{hanako.pk}/edit/")
        assert page.status_code == HTTPStatus.OK
        form_data = {k: v for k, v in page.context["form"].initial.items() if v is not None}
        response = client.post(f"/watch/residents/{hanako.pk}/edit/", {**form_data, "email": "hanako@"})
        assert response.status_code == HTTPStatus.BAD_REQUEST and words in response.content.decode()
    with tenant_scope("tenant_a"):
        assert Resident.objects.get(pk=hanako.pk).email == ""

# Reading and answering ----------------------------------------------------------------

def test_opening_the_notice_marks_it_read_and_logs_one_contact_even_when_opened_twice(town, officer, areas_a,
                                                                                     client_a):
    notice = post(officer, [areas_a["block"]], uploads=[board.Upload("地図.pdf", len(PDF), lambda: PDF)])
    token = token_of(notice, town["hanako"])
    page = client_a.get(f"/r/n/{token}/")
    assert page.status_code == HTTPStatus.OK
    assert "8月1日に公園で夏祭りを行います。" in page.content.decode()
    first = receipt(notice, town["hanako"]).read_at
    assert first is not None
    assert client_a.get(f"/r/n/{token}/").status_code == HTTPStatus.OK
    assert receipt(notice, town["hanako"]).read_at == first
    with tenant_scope("tenant_a"):
        contacts = ContactLog.objects.filter(resident=town["hanako"], channel=Channel.NOTICE_READ)
        assert contacts.count() == 1 and contacts.get().outcome == "fine"
        assert Resident.objects.get(pk=town["hanako"].pk).last_contact_at == first
        attachment = notice.attachments.get()
    download = client_a.get(f"/r/n/{token}/files/{attachment.pk}/")
    assert download.status_code == HTTPStatus.OK and download.content == PDF
    assert download["Content-Type"] == "application/pdf"
    assert client_a.get(f"/r/n/{token}x/files/{attachment.pk}/").status_code == HTTPStatus.NOT_FOUND
    assert client_a.get(f"/r/n/{token}x/").status_code == HTTPStatus.NOT_FOUND


def test_the_notice_is_shown_in_the_households_language_when_translated(town, admin_a, areas_a, client_a):
    notice = post(admin_a, [areas_a["kodo"]], translations={"en": {"title": "Summer festival", "body": "In the park."}})
    page = client_a.get(f"/r/n/{token_of(notice, town['emma'])}/").content.decode()
    assert "Summer festival" in page and "夏祭り" not in page
    page = client_a.get(f"/r/n/{token_of(notice, town['shigeru'])}/").content.decode()
    assert "夏祭りのお知らせ" in page


def test_the_last_attendance_answer_before_the_date_counts_and_later_ones_are_refused_politely(
        town, officer, areas_a, client_a):
    today = timezone.localdate()
    notice = post(officer, [areas_a["block"]], reply="attendance", answer_by=today)
    token = token_of(notice, town["hanako"])
    assert client_a.post(f"/r/n/{token}/", {"response": "yes"}).status_code == HTTPStatus.OK
    assert client_a.post(f"/r/n/{token}/", {"response": "no"}).status_code == HTTPStatus.OK
    assert client_a.post(f"/r/n/{token}/", {"response": "maybe"}).status_code == HTTPStatus.BAD_REQUEST
    assert receipt(notice, town["hanako"]).response == "no"
    with tenant_scope("tenant_a"):
        Notice.objects.filter(pk=notice.pk).update(answer_by=today - timedelta(days=1))
    late = client_a.post(f"/r/n/{token}/", {"response": "yes"})
    assert late.status_code == HTTPStatus.BAD_REQUEST
    assert "今からは回答できません" in late.content.decode()  # 花子 reads Japanese
    assert receipt(notice, town["hanako"]).response == "no"


def test_vote_and_read_tallies_on_the_officers_page(town, officer, areas_a, client_a):
    notice = post(officer, [areas_a["block"]], reply="vote", options=["土曜", "日曜", "どちらでも"])
    client_a.post(f"/r/n/{token_of(notice, town['hanako'])}/", {"response": "2"})
    client_a.post(f"/r/n/{token_of(notice, town['sato_1'])}/", {"response": "2"})
    client_a.sign_in("officer-a")
    with tenant_scope("tenant_a"):
        tallies = board.tallies(notice, officer)
    assert [(a["label"], a["count"]) for a in tallies["answers"]] == [("土曜", 0), ("日曜", 2), ("どちらでも", 0)]
    assert (tallies["households"], tallies["read"]) == (3, 2)
    page = client_a.get(f"/outreach/notices/{notice.pk}/").content.decode()
    assert "2 of 3 households have read it (67%)." in page
    assert client_a.get("/outreach/notices/").content.decode().count('data-testid="notice-row"') == 1


def test_per_block_tallies_and_unread_households_are_limited_to_what_the_viewer_may_see(
        town, admin_a, officer, kodo_staff, areas_a, client_a):
    notice = post(admin_a, [areas_a["osumi"], areas_a["kodo"]])
    client_a.get(f"/r/n/{token_of(notice, town['emma'])}/")
    with tenant_scope("tenant_a"):
        for_admin, for_kodo, for_officer = (board.tallies(notice, u) for u in (admin_a, kodo_staff, officer))
        unread_officer = [r.resident.name for r in board.unread_households(notice, officer)]
    assert [(r["area_id"], r["households"], r["read"]) for r in for_admin["per_area"]] == [
        (areas_a["block"].pk, 3, 0), (areas_a["kodo"].pk, 2, 1)]
    assert [(r["area_id"], r["households"], r["read"]) for r in for_kodo["per_area"]] == [(areas_a["kodo"].pk, 2, 1)]
    assert [r["area_id"] for r in for_officer["per_area"]] == [areas_a["block"].pk]
    # 鈴木 did not agree to share with the association: counted, never named to its officer.
    assert sorted(unread_officer) == ["佐藤 一郎", "山田 花子"]
    client_a.sign_in("kodo-staff")
    page = client_a.get(f"/outreach/notices/{notice.pk}/").content.decode()
    assert "髙橋 茂" in page and "山田 花子" not in page and "心不全" not in page
    assert "1 of 2 households have read it (50%)." in page


def test_the_printable_copy_has_one_sheet_with_a_reply_slip_per_household_on_paper(town, officer, areas_a,
                                                                                 client_a):
    notice = post(officer, [areas_a["block"]], reply="attendance")
    client_a.sign_in("officer-a")
    page = client_a.get(f"/outreach/notices/{notice.pk}/print/")
    assert page.status_code == HTTPStatus.OK
    html = page.content.decode()
    # 花子 by name, 鈴木 (not shared with the association) without one; 佐藤 are on LINE.
    assert html.count('data-testid="sheet"') == 2 and html.count('data-testid="household"') == 1
    assert "山田 花子" in html and "鈴木" not in html and "I will attend" in html and "outreach/board-print.css" in html


def test_a_tap_under_the_notice_on_line_marks_it_read_and_answers_with_the_households_link(town, officer, areas_a):
    notice = post(officer, [areas_a["block"]], reply="attendance")
    with tenant_scope("tenant_a"):
        reply = board.do_receive_line_postback("U" + "2" * 32, f"notice:{notice.pk}:open")
        assert "/r/n/" in reply
        assert board.do_receive_line_postback("U" + "2" * 32, f"notice:{notice.pk}:answer:yes")
        assert board.do_receive_line_postback("U" + "9" * 32, f"notice:{notice.pk}:open") is None
        assert board.do_receive_line_postback("U" + "2" * 32, "notice:x:open") is None
        sato = NoticeReceipt.objects.get(notice=notice, resident=town["sato_1"])
        assert (sato.read_via, sato.response) == ("line", "yes")
        assert ContactLog.objects.filter(channel=Channel.NOTICE_READ, resident=town["sato_1"]).count() == 1



def test_the_read_button_under_a_notice_on_line_reaches_the_board_through_the_webhook(
        town, officer, areas_a, client_a, fake_providers, django_capture_on_commit_callbacks):  # noqa: F811
    """What LINE really sends: a signed postback event to the webhook, answered by reply."""
    from notifications.fake_providers import line_event
    from tests.outreach.test_line_residents import post_events

    notice = post(officer, [areas_a["block"]], reply="attendance")
    with django_capture_on_commit_callbacks(execute=True):
        answered = post_events(client_a, [line_event("postback", "U" + "2" * 32, data=f"notice:{notice.pk}:answer:yes"),
                                          line_event("postback", "U" + "9" * 32, data=f"notice:{notice.pk}:open")])
    assert answered.status_code == HTTPStatus.OK
    with tenant_scope("tenant_a"):
        sato = NoticeReceipt.objects.get(notice=notice, resident=town["sato_1"])
        assert (sato.read_via, sato.response) == ("line", "yes")
        assert NoticeReceipt.objects.filter(notice=notice, read_at__isnull=False).count() == 1
    replies = [text for _token, text in fake_providers.line_replies()]
    # The household's answer is acknowledged; a LINE account the notice never went to is told politely.
    assert replies[0] == "ありがとうございます。回答「出席します」を受け付けました。"
    assert replies[1].startswith("メッセージありがとうございます。このLINEは、まだ見守りサービスにつながっていません。")

# Isolation ---------------------------------------------------------------------------

def test_outsider_b_gets_nothing_of_tenant_as_notices_and_as_links_do_not_work_on_bs_host(
        town, officer, areas_a, outsider_b, client_b):
    notice = post(officer, [areas_a["block"]], uploads=[board.Upload("a.pdf", len(PDF), lambda: PDF)])
    token = token_of(notice, town["hanako"])
    with tenant_scope("tenant_a"):
        attachment = notice.attachments.get()
    client_b.sign_in("outsider-b")
    for url in (f"/outreach/notices/{notice.pk}/", f"/outreach/notices/{notice.pk}/print/",
                f"/outreach/notices/{notice.pk}/files/{attachment.pk}/", f"/r/n/{token}/",
                f"/r/n/{token}/files/{attachment.pk}/"):
        assert client_b.get(url).status_code == HTTPStatus.NOT_FOUND, url
    assert client_b.post(f"/r/n/{token}/", {"response": "yes"}).status_code == HTTPStatus.NOT_FOUND
    assert "夏祭り" not in client_b.get("/outreach/notices/").content.decode()
    assert TenantClient(HOST_B).get(f"/r/n/{token}/").status_code == HTTPStatus.NOT_FOUND
    assert receipt(notice, town["hanako"]).read_at is None


def test_an_officer_of_another_association_gets_404_for_the_notice(town, officer, areas_a, client_a):
    notice = post(officer, [areas_a["block"]])
    other = make_user("tenant_a", "officer-kodo", User.Role.ASSOCIATION_OFFICER)
    attach(other, areas_a["kodo"])
    client_a.sign_in("officer-kodo")
    assert client_a.get(f"/outreach/notices/{notice.pk}/").status_code == HTTPStatus.NOT_FOUND
    assert client_a.get(f"/outreach/notices/{notice.pk}/print/").status_code == HTTPStatus.NOT_FOUND


def test_an_officer_records_a_reply_slip_handed_back_on_paper_as_the_households_read_and_answer(
        town, officer, areas_a, client_a, outsider_b, client_b):
    notice = post(officer, [areas_a["block"]], reply="attendance")
    hanako, suzuki = receipt(notice, town["hanako"]), receipt(notice, town["suzuki"])
    client_b.sign_in("outsider-b")
    assert client_b.post(f"/outreach/notices/{notice.pk}/slips/{hanako.pk}/").status_code == HTTPStatus.NOT_FOUND
    client_a.sign_in("officer-a")
    # 鈴木 is not shared with the association: the officer cannot name them, so not record their slip.
    assert client_a.post(f"/outreach/notices/{notice.pk}/slips/{suzuki.pk}/").status_code == HTTPStatus.NOT_FOUND
    assert client_a.post(f"/outreach/notices/{notice.pk}/slips/{hanako.pk}/",
                         {"response": "maybe"}).status_code == HTTPStatus.BAD_REQUEST
    assert receipt(notice, town["hanako"]).read_at is None
    response = client_a.post(f"/outreach/notices/{notice.pk}/slips/{hanako.pk}/", {"response": "yes"})
    assert response.status_code == HTTPStatus.FOUND
    recorded = receipt(notice, town["hanako"])
    assert (recorded.read_via, recorded.response) == ("paper", "yes")
    with tenant_scope("tenant_a"):
        contact = ContactLog.objects.get(resident=town["hanako"], channel=Channel.NOTICE_READ)
        assert contact.logged_by_id == officer.pk
