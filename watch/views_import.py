"""Staff upload a residents' list: a dry run shows every error and what would be
imported; the import creates everything or nothing. The file is never stored."""
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_http_methods

from watch.actions import check_can_manage_residents
from watch.importing import ImportReport, check_import, do_import_residents

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
CHECK, IMPORT = "check", "import"


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
        return _render(request, ImportForm())
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        return _render(request, form, status=400)
    upload = form.cleaned_data["file"]
    problem = check_upload(upload)
    if problem:
        form.add_error("file", problem)
        return _render(request, form, status=400)
    data = upload.read()
    create_areas = form.cleaned_data["create_areas"]
    committing = request.POST.get("action") == IMPORT
    if committing:
        report = do_import_residents(actor=request.user, data=data, create_areas=create_areas)
    else:
        report = check_import(data, create_areas=create_areas, actor=request.user)
    if report.fatal:
        form.add_error("file", report.errors[0].message)
        return _render(request, form, status=400)
    if report.committed:
        count = len(report.imported)
        messages.success(request, ngettext("Imported %(count)d resident.", "Imported %(count)d residents.", count)
                         % {"count": count})
        return redirect(request.path)
    # A dry run is answered; an import that was refused is a failed submission.
    return _render(request, form, report=report, committing=committing, status=400 if committing else 200)


def _render(request, form: ImportForm, *, report: ImportReport | None = None, committing: bool = False,
            status: int = 200):
    return render(request, "watch/import.html", {
        "form": form, "report": report, "committing": committing,
        "max_mb": MAX_UPLOAD_BYTES // 1024 // 1024, "CHECK": CHECK, "IMPORT": IMPORT,
    }, status=status)


import_urlpatterns = [
    path("import/", import_residents, name="import_residents"),
]
