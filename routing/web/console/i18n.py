"""Every label of the console in Russian (the seed's own terms, section numbers of its user
guide) and English: one table, looked up by key. A missing key shows the key itself, so a
forgotten label is visible, never an error."""

from __future__ import annotations

LANGS = ("ru", "en")
DEFAULT_LANG = "ru"  # the seed's language

TEXT: dict[str, tuple[str, str]] = {
    # key: (ru, en)
    "app": ("Виртуальный офис", "Virtual office"),
    "login": ("Вход", "Log in"),
    "logout": ("Выход", "Log out"),
    "account": ("Аккаунт", "Account"),
    "password": ("Пароль", "Password"),
    "noc_token": ("Токен NOC", "NOC token"),
    "noc_login": ("Вход для NOC (токен API)", "NOC login (API token)"),
    "subscriber_login": ("Вход для абонента", "Subscriber login"),
    "wrong_login": ("Неверный аккаунт или пароль", "Wrong account or password"),
    "wrong_token": ("Токен недействителен", "The token is not valid"),
    "throttled": ("Слишком много неудачных попыток; повторите через {wait} с",
                  "Too many failed logins; try again in {wait} s"),
    "required": ("Обязательное поле", "Required"),
    "accounts": ("Аккаунты", "Accounts"),
    "overview": ("Обзор", "Overview"),
    "operators": ("Операторы", "Operators"),
    "groups": ("Группы операторов", "Operator groups"),
    "sounds": ("Звуковые файлы", "Sounds"),
    "operations": ("Операции", "Operations"),
    "schedules": ("Графики работы", "Schedules"),
    "caller_lists": ("Списки номеров", "Caller lists"),
    "scenarios": ("Сценарии", "Scenarios"),
    "rules": ("Правила", "Rules"),
    "check_apply": ("Проверка и применение", "Check and apply"),
    "versions": ("Версии", "Versions"),
    "simulate": ("Что будет, если…", "What happens if…"),
    "coverage": ("Покрытие недели", "Week coverage"),
    "calls": ("История звонков", "Call history"),
    "inbox": ("Голосовые и факсы", "Voicemail and fax"),
    "not_found": ("Не найдено", "Not found"),
    "error": ("Ошибка", "Error"),
    "logged_in_as": ("Вы вошли как", "Logged in as"),
    "noc": ("NOC", "NOC"),
    "name": ("Название", "Name"),
    "id": ("Идентификатор", "Id"),
    "timezone": ("Часовой пояс", "Time zone"),
    "numbers": ("Номера", "Numbers"),
    "version": ("Версия", "Version"),
    "draft": ("Черновик", "Draft"),
    "draft_based_on": ("Черновик основан на версии {v}", "The draft is based on version {v}"),
    "draft_stale": ("Аккаунт изменён (сейчас версия {v}) после начала черновика",
                    "The account changed (now version {v}) since the draft was started"),
    "draft_changed": ("В черновике есть неприменённые изменения", "The draft has changes not yet applied"),
    "draft_clean": ("Черновик совпадает с загруженной версией", "The draft equals the loaded version"),
    "discard_draft": ("Отменить изменения черновика", "Discard the draft's changes"),
    "save": ("Сохранить", "Save"),
    "add": ("Добавить", "Add"),
    "delete": ("Удалить", "Delete"),
    "edit": ("Изменить", "Edit"),
    "cancel": ("Отмена", "Cancel"),
    "search": ("Поиск", "Search"),
    "next_page": ("Далее", "Next"),
    "prev_page": ("Назад", "Previous"),
    "problems": ("Проблемы", "Problems"),
    "no_problems": ("Ошибок нет", "No errors"),
    "csrf_failed": ("Форма устарела (токен CSRF); обновите страницу и повторите",
                    "The form is stale (CSRF token); reload the page and try again"),
}


def translate(key: str, lang: str, **values: object) -> str:
    """The label in LANG, with {placeholders} filled; the key itself if it is not in the table."""
    pair = TEXT.get(key)
    if pair is None:
        return key.format(**values) if values else key
    text = pair[0] if lang == "ru" else pair[1]
    return text.format(**values) if values else text
