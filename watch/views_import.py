"""Staff upload a residents' list. The upload is kept as an import job: when its columns
cannot all be recognised, a page maps each column (and values the import does not know)
to a field, saved for the tenant's next file; then a dry run shows every error and
what would be imported, and the import creates everything or nothing (a large file in
a task, its progress shown)."""
import csv
import io
from urllib.parse import quote

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from watch.actions import check_can_manage_residents
from watch.importing import (
    CHOICE_FIELDS,
    FIELD_BY_KEY,
    FIELDS,
    IGNORE,
    ImportFileError,
    check_import,
    do_create_import_job,
    do_map_import_job,
    do_start_import_job,
    get_import_job_for_user,
    job_progress,
    job_table,
    saved_columns,
    suggest_columns,
    unknown_values,
    value_key,
)
from watch.models import ImportJob

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
CHECK, IMPORT = "check", "import"
UNCHOSEN = "-"  # a column no field has been chosen for yet
RECENT_JOBS = 5


class ImportForm(forms.Form):
    file = forms.FileField(label=gettext_lazy("Residents' list (CSV file)"))
    create_areas = forms.BooleanField(
        required=False, label=gettext_lazy("Create districts, residents' associations and blocks that do not exist"),
    )


def check_upload(upload) -> str | None:
    """Why the uploaded file cannot be a residents' list, or None (decoding is checked later)."""
    if not upload.name.lower().endswith(".csv"):
        return _("Choose a CSV file (.csv). In Excel, use “Save as” and choose “CSV”.")
    if upload.size > MAX_UPLOAD_BYTES:
        return _("The file is too large (%(size)s MB); the limit is %(max)s MB.") % {
            "size": f"{upload.size / 1024 / 1024:.1f}", "max": MAX_UPLOAD_BYTES // 1024 // 1024}
    return None


@login_required
@require_http_methods(["GET", "POST"])
def import_residents(request):
    check_can_manage_residents(request.user)  # volunteers and officers: 403
    if request.method == "GET":
        return _render_upload(request, ImportForm())
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        return _render_upload(request, form, status=400)
    upload = form.cleaned_data["file"]
    if problem := check_upload(upload):
        form.add_error("file", problem)
        return _render_upload(request, form, status=400)
    try:
        job = do_create_import_job(actor=request.user, file_name=upload.name, data=upload.read(),
                                   create_areas=form.cleaned_data["create_areas"])
    except ImportFileError as exc:
        form.add_error("file", str(exc))
        return _render_upload(request, form, status=400)
    if job.columns is None:
        return redirect("watch:import_mapping", pk=job.pk)
    if request.POST.get("action") == IMPORT:
        do_start_import_job(actor=request.user, job=job)
    return redirect("watch:import_job", pk=job.pk)


def _render_upload(request, form: ImportForm, *, status: int = 200):
    return render(request, "watch/import.html", {
        "form": form, "max_mb": MAX_UPLOAD_BYTES // 1024 // 1024, "CHECK": CHECK, "IMPORT": IMPORT,
        "jobs": ImportJob.objects.filter(created_by=request.user).defer("data")[:RECENT_JOBS],
    }, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def import_job(request, pk: int):
    """The job: its dry run and the button to import; its progress; its outcome."""
    job = get_import_job_for_user(request.user, pk)
    if request.method == "POST":
        try:
            do_start_import_job(actor=request.user, job=job)
        except ValidationError:
            return redirect("watch:import_mapping", pk=job.pk)
        return redirect("watch:import_job", pk=job.pk)
    if job.state == ImportJob.State.PENDING and job.columns is None:
        return redirect("watch:import_mapping", pk=job.pk)
    report = None
    if job.state == ImportJob.State.PENDING:
        report = check_import(bytes(job.data), create_areas=job.create_areas, actor=request.user,
                              columns=job.columns)
    return render(request, "watch/import_job.html", {
        "job": job, "report": report, "progress": job_progress(job), "State": ImportJob.State,
        "columns": _mapped_columns(job) if report else [],
    })


def _mapped_columns(job: ImportJob) -> list[tuple[str, str]]:
    """(the file's header, the field it goes to) of each column imported."""
    headers = job_table(job).headers
    return [(header, FIELD_BY_KEY[key].label) for header, key in zip(headers, job.columns, strict=True) if key]


@login_required
@require_GET
def import_status(request, pk: int):
    """Progress of a job, polled by its page."""
    job = get_import_job_for_user(request.user, pk)
    status = job_progress(job)
    status["finished"] = job.state in (ImportJob.State.DONE, ImportJob.State.FAILED)
    return JsonResponse(status)


@login_required
@require_http_methods(["GET", "POST"])
def import_mapping(request, pk: int):
    """Map each column of the file to a field or ignore it, and say what the values the
    import does not know mean; saved for the tenant's next file with these headers."""
    job = get_import_job_for_user(request.user, pk)
    if job.state != ImportJob.State.PENDING:
        return redirect("watch:import_job", pk=job.pk)
    table = job_table(job)
    if request.method == "GET":
        columns = job.columns or saved_columns(table) or suggest_columns(table)
        return _render_mapping(request, job, table, columns, unknown_values(table, columns))

    columns = []
    for index in range(len(table.headers)):
        chosen = request.POST.get(f"column-{index}", UNCHOSEN)
        columns.append(chosen if chosen in FIELD_BY_KEY or chosen == IGNORE else None)
    unknown = unknown_values(table, columns)
    not_offered = any(_value_name(key, written) not in request.POST
                      for key, values in unknown.items() for written in values)
    if None in columns or not_offered:
        # Values of columns just chosen are asked about first; nothing is saved yet.
        errors = [_("Choose a field for every column, or ignore it.")] if None in columns else []
        return _render_mapping(request, job, table, columns, unknown, errors=errors,
                               status=400 if errors else 200)
    values: dict[str, dict[str, str]] = {}
    for key, written_values in unknown.items():
        for written in written_values:
            if code := request.POST.get(_value_name(key, written), ""):
                values.setdefault(key, {})[written] = code
    try:
        do_map_import_job(actor=request.user, job=job, columns=columns, values=values)
    except ValidationError as exc:
        return _render_mapping(request, job, table, columns, unknown, errors=exc.messages, status=400)
    return redirect("watch:import_job", pk=job.pk)


def _value_name(key: str, written: str) -> str:
    return f"value:{key}:{value_key(written)}"


def _render_mapping(request, job, table, columns, unknown, *, errors=(), status=200):
    rows = [{"index": index, "header": header, "samples": table.samples(index),
             "chosen": UNCHOSEN if columns[index] is None else columns[index]}
            for index, header in enumerate(table.headers)]
    value_rows = [{"field": FIELD_BY_KEY[key], "values": [(written, _value_name(key, written),
                                                           request.POST.get(_value_name(key, written), ""))
                                                          for written in unknown[key]]}
                  for key in CHOICE_FIELDS if key in unknown]
    fields = [(f.key, str(f.label) if f.header in str(f.label) else f"{f.label} ({f.header})", f.required)
              for f in FIELDS]
    return render(request, "watch/import_mapping.html", {
        "job": job, "rows": rows, "fields": fields, "value_rows": value_rows, "errors": errors,
        "UNCHOSEN": UNCHOSEN, "IGNORE": IGNORE,
    }, status=status)


# One example record for the template, by field key (every field of FIELDS has one):
# a fictitious resident written as municipal lists write them.
TEMPLATE_EXAMPLE = {
    "number": "100001", "name": "見守 太郎", "furigana": "ミマモリ タロウ", "gender": "男",
    "birth_date": "昭和15年4月1日", "postal_code": "610-0341", "address": "京田辺市大住ヶ丘1丁目2-3",
    "phone": "0774-62-0000", "mobile": "090-0000-0000", "household": "独居", "care_level": "要支援1",
    "district": "大住", "association": "大住ヶ丘連合自治会", "block": "3班", "evacuation": "要",
    "consent": "同意", "contact_name": "見守 花子", "contact_relation": "長女", "contact_phone": "075-000-0000",
    "notes": "足が不自由なので、訪問は午前中に",
}
TEMPLATE_FILE_NAMES = ("residents-template.csv", "住民名簿テンプレート.csv")  # (ASCII, as browsers show it)


@login_required
@require_GET
def import_template(request):
    """A CSV file whose header row names every column the import understands (our own
    headers, in the order of FIELDS) and one example record to replace: UTF-8 with a BOM,
    so that Excel opens it with the Japanese intact."""
    check_can_manage_residents(request.user)
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([f.header for f in FIELDS])
    writer.writerow([TEMPLATE_EXAMPLE[f.key] for f in FIELDS])
    response = HttpResponse(("\ufeff" + out.getvalue()).encode("utf-8"), content_type="text/csv; charset=utf-8")
    ascii_name, name = TEMPLATE_FILE_NAMES
    response["Content-Disposition"] = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
    return response


import_urlpatterns = [
    path("import/", import_residents, name="import_residents"),
    path("import/template.csv", import_template, name="import_template"),
    path("import/<int:pk>/", import_job, name="import_job"),
    path("import/<int:pk>/mapping/", import_mapping, name="import_mapping"),
    path("import/<int:pk>/status/", import_status, name="import_status"),
]
