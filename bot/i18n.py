"""Every user-facing string, in English and Turkish.

The language follows the user's Telegram `language_code`: Turkish for `tr*`, English otherwise.
Placeholders are `str.format` fields; values are HTML-escaped by `t()` because replies use HTML.
"""

from __future__ import annotations

from html import escape
from typing import Final

SUPPORTED: Final = ("en", "tr")

_MESSAGES: Final[dict[str, tuple[str, str]]] = {
    # --- general -------------------------------------------------------------------------
    "role.student": ("Student", "Öğrenci"),
    "role.teacher": ("Teacher", "Öğretim elemanı"),
    "start.unlinked": (
        "Welcome to ATTN, the attendance bot.\n"
        "Link your Aksis account with /login to take part in attendance.",
        "ATTN yoklama botuna hoş geldiniz.\n"
        "Yoklamaya katılmak için Aksis hesabınızı /login ile bağlayın.",
    ),
    "start.linked": (
        "Hello {name} ({role}). Send /help to see what you can do.",
        "Merhaba {name} ({role}). Neler yapabileceğinizi görmek için /help yazın.",
    ),
    "help.unlinked": (
        "<b>ATTN</b> takes class attendance.\n"
        "/login — link your Aksis account (your password is never stored)\n"
        "/cancel — leave the current step\n/help — this message",
        "<b>ATTN</b> derslerde yoklama alır.\n"
        "/login — Aksis hesabınızı bağlayın (şifreniz saklanmaz)\n"
        "/cancel — bulunduğunuz adımdan çıkın\n/help — bu mesaj",
    ),
    "help.student": (
        "<b>ATTN for students</b>\n"
        "Send the six-digit code your teacher shows in class to check in.\n"
        "/my_attendance — your attendance\n/reminders — turn reminders on or off\n"
        "/me — your linked account\n/logout — unlink this Telegram account\n"
        "/cancel — leave the current step",
        "<b>Öğrenciler için ATTN</b>\n"
        "Yoklamaya katılmak için derste gösterilen altı haneli kodu gönderin.\n"
        "/my_attendance — devam durumunuz\n/reminders — hatırlatmaları açın/kapatın\n"
        "/me — bağlı hesabınız\n/logout — bu Telegram hesabının bağlantısını kaldırın\n"
        "/cancel — bulunduğunuz adımdan çıkın",
    ),
    "help.teacher": (
        "<b>ATTN for teachers</b>\n"
        "/start_session — open attendance for the lesson on now "
        "(or /start_session LESSON NAME)\n"
        "/attendees — who is in; accept, reject or add students\n"
        "/end_session — close attendance now\n"
        "/history — past sessions, corrections, excused absences and CSV export\n"
        "/export — a course's term sheet (XLSX and CSV)\n"
        "/reminders — turn lesson reminders on or off\n"
        "/me — your linked account\n/logout — unlink this Telegram account",
        "<b>Öğretim elemanları için ATTN</b>\n"
        "/start_session — şu anki ders için yoklamayı açın "
        "(veya /start_session DERS ADI)\n"
        "/attendees — katılanlar; öğrenci onaylayın, reddedin veya ekleyin\n"
        "/end_session — yoklamayı şimdi kapatın\n"
        "/history — geçmiş yoklamalar, düzeltmeler ve CSV dışa aktarma\n"
        "/export — dersin dönem çizelgesi (XLSX ve CSV)\n"
        "/reminders — ders hatırlatmalarını açın/kapatın\n"
        "/me — bağlı hesabınız\n/logout — bu Telegram hesabının bağlantısını kaldırın",
    ),
    "cancel.done": ("Cancelled.", "İptal edildi."),
    "cancel.nothing": ("There is nothing to cancel.", "İptal edilecek bir işlem yok."),
    "error.generic": (
        "Sorry, something went wrong on our side. Please try again. (error id {error_id})",
        "Üzgünüz, bizim tarafımızda bir hata oluştu. Lütfen tekrar deneyin. (hata kodu {error_id})",
    ),
    "error.unavailable": (
        "The attendance service is temporarily unavailable. Please try again in a moment.",
        "Yoklama hizmeti geçici olarak kullanılamıyor. Lütfen birazdan tekrar deneyin.",
    ),
    "text.unknown": (
        "I did not understand that. Send the six-digit code from class, or /help.",
        "Bunu anlayamadım. Dersteki altı haneli kodu gönderin veya /help yazın.",
    ),
    "text.non_text": (
        "I can only read text messages. Send the six-digit code, or /help.",
        "Yalnızca metin mesajlarını okuyabilirim. Altı haneli kodu gönderin veya /help yazın.",
    ),
    "text.private_only_deleted": (
        "I work in private chats only: send me /login there. I deleted your message because "
        "it may hold your user name.",
        "Yalnızca özel sohbette çalışırım: /login komutunu bana oradan gönderin. Kullanıcı "
        "adınızı içerebileceği için mesajınızı sildim.",
    ),
    "text.private_only": (
        "Please talk to me in a private chat.",
        "Lütfen benimle özel sohbetten yazışın.",
    ),
    "text.too_long": (
        "That message is too long. Send the six-digit code, or /help.",
        "Bu mesaj çok uzun. Altı haneli kodu gönderin veya /help yazın.",
    ),
    "auth.not_linked": (
        "Link your Aksis account first: /login",
        "Önce Aksis hesabınızı bağlayın: /login",
    ),
    "auth.teachers_only": (
        "Only teachers can do that.",
        "Bunu yalnızca öğretim elemanları yapabilir.",
    ),
    "auth.not_yours": (
        "That is not your session.",
        "Bu yoklama size ait değil.",
    ),
    # --- login ---------------------------------------------------------------------------
    "login.ask_username": (
        "Send your Aksis user name (school number or T.C. identity number).\n/cancel to stop.",
        "Aksis kullanıcı adınızı gönderin (öğrenci numarası veya T.C. kimlik numarası).\n"
        "Vazgeçmek için /cancel.",
    ),
    "login.ask_password": (
        "Now send your Aksis password. I delete the message as soon as I read it and never "
        "store it.\n/cancel to stop.",
        "Şimdi Aksis şifrenizi gönderin. Mesajı okur okumaz silerim ve şifrenizi asla "
        "saklamam.\nVazgeçmek için /cancel.",
    ),
    "login.bad_username": (
        "That does not look like a user name. Send your school number or T.C. identity "
        "number, or /cancel.",
        "Bu bir kullanıcı adına benzemiyor. Öğrenci numaranızı veya T.C. kimlik numaranızı "
        "gönderin ya da /cancel yazın.",
    ),
    "login.text_only": (
        "Please send it as a text message, or /cancel.",
        "Lütfen metin mesajı olarak gönderin ya da /cancel yazın.",
    ),
    "login.delete_failed": (
        "⚠️ I could not delete your password message. Please delete it yourself now.",
        "⚠️ Şifrenizin bulunduğu mesajı silemedim. Lütfen hemen kendiniz silin.",
    ),
    "login.checking": ("Signing in to Aksis…", "Aksis'e giriş yapılıyor…"),
    "login.ok": (
        "✅ Linked: <b>{name}</b> ({role}), number {number}.\n{lessons} lessons found in your "
        "schedule. Send /help to see what you can do.",
        "✅ Bağlandı: <b>{name}</b> ({role}), numara {number}.\nProgramınızda {lessons} ders "
        "bulundu. Neler yapabileceğinizi görmek için /help yazın.",
    ),
    "login.wrong": (
        "❌ Aksis did not accept that user name and password. Try again with /login.",
        "❌ Aksis bu kullanıcı adı ve şifreyi kabul etmedi. /login ile tekrar deneyin.",
    ),
    "login.portal_down": (
        "Aksis is not answering right now. Please try /login again in a few minutes.",
        "Aksis şu anda yanıt vermiyor. Lütfen birkaç dakika sonra /login ile tekrar deneyin.",
    ),
    "login.portal_changed": (
        "Aksis answered in a way I do not recognise, so I could not sign you in. The team has "
        "been told; please try again later.",
        "Aksis tanımadığım bir yanıt verdi, bu yüzden giriş yapamadım. Ekip bilgilendirildi; "
        "lütfen daha sonra tekrar deneyin.",
    ),
    "login.expired": (
        "⌛ Login timed out, send /login again. I deleted your message in case it was your "
        "password.",
        "⌛ Giriş zaman aşımına uğradı, yeniden /login gönderin. Şifreniz olabileceği için "
        "mesajınızı sildim.",
    ),
    "login.busy": (
        "Many people are signing in right now. Please try /login again in {minutes} min.",
        "Şu anda çok sayıda kişi giriş yapıyor. Lütfen {minutes} dk sonra /login ile tekrar "
        "deneyin.",
    ),
    "login.throttled": (
        "Too many login attempts. Please wait {minutes} min and try again.",
        "Çok fazla giriş denemesi. Lütfen {minutes} dk bekleyip tekrar deneyin.",
    ),
    "login.moved": (
        "Your Aksis account {number} was linked to another Telegram account, so this one has "
        "been unlinked. If that was not you, /login again and change your Aksis password.",
        "{number} numaralı Aksis hesabınız başka bir Telegram hesabına bağlandı, bu hesabın "
        "bağlantısı kaldırıldı. Bunu siz yapmadıysanız yeniden /login yapın ve Aksis "
        "şifrenizi değiştirin.",
    ),
    "term.login_again": (
        "A new term has begun. Please /login again so that your new timetable is used: "
        "last term's lessons no longer count.",
        "Yeni dönem başladı. Yeni ders programınızın kullanılması için lütfen yeniden /login "
        "yapın: geçen dönemin dersleri artık sayılmıyor.",
    ),
    "session.ad_hoc": (
        "This lesson is not in any timetable, so it has no enrolment: nobody was notified, "
        "nobody will be listed absent, and everyone who sends the code is recorded.",
        "Bu ders hiçbir ders programında yok, bu yüzden kayıtlı öğrenci listesi yok: kimseye "
        "bildirim gitmedi, kimse yok yazılmayacak ve kodu gönderen herkes kaydedilir.",
    ),
    "logout.ok": (
        "This Telegram account is no longer linked. /login to link again.",
        "Bu Telegram hesabının bağlantısı kaldırıldı. Yeniden bağlamak için /login.",
    ),
    "me.info": (
        "<b>{name}</b>\nRole: {role}\nNumber: {number}\nReminders: {reminders}",
        "<b>{name}</b>\nRol: {role}\nNumara: {number}\nHatırlatmalar: {reminders}",
    ),
    "on": ("on", "açık"),
    "off": ("off", "kapalı"),
    "reminders.now": (
        "Reminders are now {state}.",
        "Hatırlatmalar artık {state}.",
    ),
    # --- teacher sessions ----------------------------------------------------------------
    "session.status": (
        "📋 <b>{lesson}</b>\nCheck-in code: <code>{code}</code>\n{level}\n{time_left}\n"
        "Checked in: <b>{present}</b>{pending}\n\nStudents send the code to this bot, or "
        "open: {link}",
        "📋 <b>{lesson}</b>\nYoklama kodu: <code>{code}</code>\n{level}\n{time_left}\n"
        "Katılan: <b>{present}</b>{pending}\n\nÖğrenciler kodu bu bota gönderir veya şu "
        "bağlantıyı açar: {link}",
    ),
    "session.level": ("Security: {name}", "Güvenlik: {name}"),
    "level.1": ("level 1 · code", "seviye 1 · kod"),
    "level.2": ("level 2 · code and place", "seviye 2 · kod ve konum"),
    "level.3": ("level 3 · rotating code and place", "seviye 3 · değişen kod ve konum"),
    "level.changed": ("Security is now {name}.", "Güvenlik artık {name}."),
    "level.bad": ("There is no such security level.", "Böyle bir güvenlik seviyesi yok."),
    "session.pending_part": (" · awaiting review: {pending}", " · onay bekleyen: {pending}"),
    "session.time_left": (
        "Closes at {end} ({minutes} min left)",
        "{end} saatinde kapanır ({minutes} dk kaldı)",
    ),
    "session.closed_at": ("Closed at {end}", "{end} saatinde kapandı"),
    "session.already_open": (
        "You already have an open session for <b>{lesson}</b> (code <code>{code}</code>). "
        "End it with /end_session first.",
        "<b>{lesson}</b> için zaten açık bir yoklamanız var (kod <code>{code}</code>). "
        "Önce /end_session ile kapatın.",
    ),
    "session.choose": (
        "No lesson of yours is on right now. Pick one of today's lessons, or send "
        "/start_session LESSON NAME.",
        "Şu anda dersiniz görünmüyor. Bugünkü derslerinizden birini seçin veya "
        "/start_session DERS ADI gönderin.",
    ),
    "session.no_lessons": (
        "I found no lessons of yours today. Send /start_session LESSON NAME to open "
        "attendance anyway.",
        "Bugün size ait ders bulamadım. Yine de yoklama açmak için /start_session DERS ADI "
        "gönderin.",
    ),
    "session.bad_name": (
        "Lesson names are 2 to 100 characters. Try /start_session LESSON NAME.",
        "Ders adı 2 ile 100 karakter arasında olmalı. /start_session DERS ADI deneyin.",
    ),
    "session.choice_expired": (
        "That lesson is no longer in today's list. Send /start_session again.",
        "Bu ders artık bugünkü listede değil. /start_session komutunu tekrar gönderin.",
    ),
    "session.none_open": (
        "You have no open session. Start one with /start_session.",
        "Açık bir yoklamanız yok. /start_session ile başlatın.",
    ),
    "session.ended": (
        "🔒 Attendance for <b>{lesson}</b> is closed: {present} checked in{pending}. "
        "The sheet is saved within a minute; /history shows it.",
        "🔒 <b>{lesson}</b> yoklaması kapandı: {present} katılım{pending}. "
        "Liste bir dakika içinde kaydedilir; /history ile görebilirsiniz.",
    ),
    "button.end": ("🔒 End session", "🔒 Yoklamayı bitir"),
    "button.level": ("🛡 {level}", "🛡 {level}"),
    "button.level_on": ("🛡 {level} ✓", "🛡 {level} ✓"),
    "button.attendees": ("👥 Attendees", "👥 Katılanlar"),
    "button.accept": ("✅ {number}", "✅ {number}"),
    "button.reject": ("❌ {number}", "❌ {number}"),
    "button.add": ("➕ Add student", "➕ Öğrenci ekle"),
    "button.prev": ("◀️", "◀️"),
    "button.next": ("▶️", "▶️"),
    "button.outdated": (
        "This button is outdated. Send the command again for a fresh one.",
        "Bu düğmenin süresi geçmiş. Yenisi için komutu tekrar gönderin.",
    ),
    "button.start_attendance": ("▶️ Start attendance", "▶️ Yoklamayı başlat"),
    "attendees.header": (
        "👥 <b>{lesson}</b> — {total} records (page {page}/{pages})",
        "👥 <b>{lesson}</b> — {total} kayıt (sayfa {page}/{pages})",
    ),
    "attendees.empty": (
        "👥 <b>{lesson}</b> — nobody has checked in yet.",
        "👥 <b>{lesson}</b> — henüz kimse katılmadı.",
    ),
    "attendees.line": (
        "{icon} {name} · {number} · {time}{note}",
        "{icon} {name} · {number} · {time}{note}",
    ),
    "note.late": (" · late", " · geç"),
    "note.pending": (" · not in schedule, awaiting review", " · programda yok, onay bekliyor"),
    "note.rejected": (" · rejected", " · reddedildi"),
    "note.added": (" · added by teacher", " · öğretim elemanı ekledi"),
    "review.accepted": ("✅ {name} ({number}) accepted.", "✅ {name} ({number}) onaylandı."),
    "review.rejected": ("❌ {name} ({number}) rejected.", "❌ {name} ({number}) reddedildi."),
    "review.ask_reason": (
        "Why are you rejecting {name} ({number})? Send a short reason, or - for none. "
        "/cancel to keep the record.",
        "{name} ({number}) neden reddediliyor? Kısa bir gerekçe gönderin veya gerekçesiz için "
        "- yazın. Kaydı korumak için /cancel.",
    ),
    "review.no_record": (
        "There is no record for {number} in this session.",
        "Bu yoklamada {number} için kayıt yok.",
    ),
    "review.session_gone": (
        "That session is closed and saved; use /history to correct it.",
        "Bu yoklama kapandı ve kaydedildi; düzeltmek için /history kullanın.",
    ),
    "add.ask_number": (
        "Send the school number of the student to add, or /cancel.",
        "Eklenecek öğrencinin numarasını gönderin ya da /cancel yazın.",
    ),
    "add.bad_number": (
        "A school number is 3 to 20 letters or digits. Send it again, or /cancel.",
        "Öğrenci numarası 3 ile 20 arası harf veya rakamdır. Tekrar gönderin ya da /cancel.",
    ),
    "add.ok": (
        "➕ {number} ({name}) added as present.",
        "➕ {number} ({name}) katıldı olarak eklendi.",
    ),
    "add.already": ("{number} is already on the list.", "{number} zaten listede."),
    "student.checked_in_by_teacher": (
        "Your teacher marked you present for {lesson}.",
        "Öğretim elemanınız sizi {lesson} dersinde katıldı olarak işaretledi.",
    ),
    "student.rejected": (
        "Your check-in for {lesson} was rejected by the teacher.{reason}",
        "{lesson} dersi için yoklama kaydınız öğretim elemanı tarafından reddedildi.{reason}",
    ),
    "student.accepted": (
        "Your check-in for {lesson} was accepted.",
        "{lesson} dersi için yoklama kaydınız onaylandı.",
    ),
    # --- check-in ------------------------------------------------------------------------
    "checkin.ok": (
        "✅ You are checked in to <b>{lesson}</b> at {time}.",
        "✅ <b>{lesson}</b> dersine {time} itibarıyla katıldınız.",
    ),
    "checkin.ok_late": (
        "✅ You are checked in to <b>{lesson}</b> at {time} (late).",
        "✅ <b>{lesson}</b> dersine {time} itibarıyla katıldınız (geç).",
    ),
    "checkin.pending": (
        "🕓 Recorded for <b>{lesson}</b> at {time}, but this lesson is not in your Aksis "
        "schedule, so your teacher will review it.",
        "🕓 <b>{lesson}</b> için {time} itibarıyla kaydedildi, ancak bu ders Aksis "
        "programınızda yok; öğretim elemanınız inceleyecek.",
    ),
    "checkin.another_section": (
        "🕓 Recorded for <b>{lesson}</b> at {time}, but your Aksis schedule has this course "
        "in another section, so your teacher will review it.",
        "🕓 <b>{lesson}</b> için {time} itibarıyla kaydedildi, ancak Aksis programınızda bu "
        "ders başka bir şubede; öğretim elemanınız inceleyecek.",
    ),
    "checkin.duplicate": (
        "You are already checked in to <b>{lesson}</b> (recorded at {time}).",
        "<b>{lesson}</b> dersine zaten katıldınız ({time} itibarıyla kaydedildi).",
    ),
    "checkin.expired": (
        "⌛ This code has expired: use the one on the screen now.",
        "⌛ Bu kodun süresi doldu: şimdi ekranda olanı kullanın.",
    ),
    "checkin.need_location": (
        "📍 Code accepted for <b>{lesson}</b>. Now tap the button below to send your location "
        "(within {minutes} min) to finish checking in.",
        "📍 <b>{lesson}</b> için kod kabul edildi. Yoklamayı tamamlamak için aşağıdaki düğmeye "
        "dokunup konumunuzu gönderin ({minutes} dk içinde).",
    ),
    "button.send_location": ("📍 Send my location", "📍 Konumumu gönder"),
    "location.present": (
        "✅ Location confirmed: you are checked in to <b>{lesson}</b> at {time}.",
        "✅ Konum doğrulandı: <b>{lesson}</b> dersine {time} itibarıyla katıldınız.",
    ),
    "location.pending": (
        "🕓 Recorded for <b>{lesson}</b>, but {why}, so your teacher will review it.",
        "🕓 <b>{lesson}</b> için kaydedildi, ancak {why}; öğretmeniniz inceleyecek.",
    ),
    "location.no_wait": (
        "No check-in is waiting for a location. Send the code first; if you sent it more than "
        "a few minutes ago, your teacher will review your check-in.",
        "Konum bekleyen bir yoklama yok. Önce kodu gönderin; kodu birkaç dakikadan önce "
        "gönderdiyseniz öğretmeniniz yoklamanızı inceleyecek.",
    ),
    "location.decided": (
        "Your teacher has already decided your check-in.",
        "Öğretmeniniz yoklamanız hakkında zaten karar verdi.",
    ),
    "why.LOCATION_TOO_FAR": (
        "your location is too far from the classroom",
        "konumunuz sınıftan çok uzak",
    ),
    "why.LOCATION_FORWARDED": ("the location was forwarded", "konum iletilmiş bir mesaj"),
    "why.LOCATION_STALE": (
        "the location was not sent just now",
        "konum az önce gönderilmemiş",
    ),
    "why.OVER_CAP": (
        "more students checked in than the teacher counted in the room",
        "öğretmenin saydığından fazla öğrenci yoklamaya katıldı",
    ),
    "teacher.ask_location": (
        "📍 Level {level} checks students' locations against yours. Tap the button below to "
        "share your location (from your phone, in the classroom).",
        "📍 Seviye {level}, öğrencilerin konumunu sizinkiyle karşılaştırır. Konumunuzu "
        "paylaşmak için aşağıdaki düğmeye dokunun (sınıfta, telefonunuzdan).",
    ),
    "teacher.location_saved": (
        "📍 Location saved for <b>{lesson}</b>: students within {radius} m are checked in.",
        "📍 <b>{lesson}</b> için konum kaydedildi: {radius} m içindeki öğrenciler katılmış "
        "sayılır.",
    ),
    "teacher.location_no_session": (
        "You have no open session to attach a location to.",
        "Konum eklenecek açık bir yoklamanız yok.",
    ),
    "session.anchor_missing": (
        "📍 Waiting for your location: until you share it, the code alone counts.",
        "📍 Konumunuz bekleniyor: paylaşana kadar yalnızca kod yeterli.",
    ),
    "session.anchor_set": ("📍 Location set", "📍 Konum ayarlandı"),
    "session.cap_part": (" of {cap} in the room", " / sınıfta {cap}"),
    "session.projector": ("Projector page: {url}", "Projeksiyon sayfası: {url}"),
    "button.cap": ("👥 Head count", "👥 Kişi sayısı"),
    "cap.ask": (
        "How many students are in the room? Send a number (0 removes the cap). Check-ins "
        "beyond it are recorded for your review.",
        "Sınıfta kaç öğrenci var? Bir sayı gönderin (0 sınırı kaldırır). Fazlası onayınıza "
        "düşer.",
    ),
    "cap.set": ("Head count set to {cap}.", "Kişi sayısı {cap} olarak ayarlandı."),
    "cap.cleared": ("Head count removed.", "Kişi sayısı kaldırıldı."),
    "cap.bad": (
        "Send a whole number between 0 and 10000.",
        "0 ile 10000 arasında bir tam sayı gönderin.",
    ),
    "note.location": (" · {why}, awaiting review", " · {why}, onay bekliyor"),
    "why.LOCATION_MISSING": ("no location", "konum yok"),
    "checkin.ended": (
        "Attendance for <b>{lesson}</b> has already closed.",
        "<b>{lesson}</b> için yoklama kapandı.",
    ),
    "checkin.wrong": (
        "That code does not match an open attendance. Check the code shown in class.",
        "Bu kod açık bir yoklamaya ait değil. Derste gösterilen kodu kontrol edin.",
    ),
    "checkin.throttled": (
        "Too many wrong codes. Please wait {seconds} s before trying again.",
        "Çok fazla hatalı kod. Tekrar denemeden önce lütfen {seconds} sn bekleyin.",
    ),
    "checkin.teacher": (
        "Teachers do not check in. Use /start_session to open attendance.",
        "Öğretim elemanları yoklamaya katılmaz. Yoklama açmak için /start_session.",
    ),
    # --- reminders and results -----------------------------------------------------------
    "remind.teacher": (
        "⏰ <b>{lesson}</b> starts at {start}. Tap to open attendance.",
        "⏰ <b>{lesson}</b> {start} saatinde başlıyor. Yoklamayı açmak için dokunun.",
    ),
    "remind.open": (
        "📣 Attendance is open for <b>{lesson}</b>. Send the code shown in class.",
        "📣 <b>{lesson}</b> için yoklama açık. Derste gösterilen kodu gönderin.",
    ),
    "remind.closing": (
        "⏳ Attendance for <b>{lesson}</b> closes at {end} and you have not checked in yet.",
        "⏳ <b>{lesson}</b> yoklaması {end} saatinde kapanıyor ve henüz katılmadınız.",
    ),
    # The teacher's summary and /history word a session's counts alike (services.status).
    "final.teacher": (
        "📊 <b>{lesson}</b> ({date}) saved: {present} present, {late} late, {absent} absent,"
        " {pending} pending review, {rejected} rejected.",
        "📊 <b>{lesson}</b> ({date}) kaydedildi: {present} katıldı, {late} geç, {absent} "
        "katılmadı, {pending} onay bekliyor, {rejected} reddedildi.",
    ),
    "final.present": (
        "📊 {lesson} ({date}): you were marked present.",
        "📊 {lesson} ({date}): katıldı olarak kaydedildiniz.",
    ),
    "final.late": (
        "📊 {lesson} ({date}): you were marked present (late).",
        "📊 {lesson} ({date}): katıldı (geç) olarak kaydedildiniz.",
    ),
    "final.absent": (
        "📊 {lesson} ({date}): you were marked absent.",
        "📊 {lesson} ({date}): katılmadı olarak kaydedildiniz.",
    ),
    "final.not_accepted": (
        "📊 {lesson} ({date}): your check-in was not accepted.",
        "📊 {lesson} ({date}): yoklama kaydınız kabul edilmedi.",
    ),
    # --- history -------------------------------------------------------------------------
    "history.empty": ("No saved sessions yet.", "Henüz kaydedilmiş yoklama yok."),
    "history.header": ("🗂 Your recent sessions:", "🗂 Son yoklamalarınız:"),
    "history.line": (
        "{date} · {lesson} · {present}/{total}",
        "{date} · {lesson} · {present}/{total}",
    ),
    "history.detail": (
        "🗂 <b>{lesson}</b> — {date}\n{present} present, {late} late, {absent} absent,"
        " {excused} excused, {pending} pending review, {rejected} rejected.\n"
        "Tap a student to switch present ↔ absent; CSV exports the sheet.",
        "🗂 <b>{lesson}</b> — {date}\n{present} katıldı, {late} geç, {absent} "
        "katılmadı, {excused} mazeretli, {pending} onay bekliyor, {rejected} reddedildi.\n"
        "Katıldı ↔ katılmadı arasında geçiş için öğrenciye dokunun; CSV listeyi dışa aktarır.",
    ),
    "history.corrected": (
        "✏️ {number} is now {state}.",
        "✏️ {number} artık {state}.",
    ),
    "state.present": ("present", "katıldı"),
    "state.absent": ("absent", "katılmadı"),
    "button.csv": ("⬇️ CSV", "⬇️ CSV"),
    "button.back": ("↩️ Back", "↩️ Geri"),
    "history.not_found": ("That session no longer exists.", "Bu yoklama artık mevcut değil."),
    "my.empty": ("No saved attendance yet.", "Henüz kaydedilmiş yoklamanız yok."),
    "my.header": (
        "🗂 Your attendance ({attended}/{total} attended):",
        "🗂 Devam durumunuz ({attended}/{total} katılım):",
    ),
    "my.line": ("{icon} {date} · {lesson}{note}", "{icon} {date} · {lesson}{note}"),
    "my.courses": (
        "🗂 Your attendance by course (attended / held):",
        "🗂 Ders bazında devam durumunuz (katıldığınız / yapılan):",
    ),
    "my.course_line": (
        "{mark} {lesson}: {attended}/{held} · {percent}%{below}",
        "{mark} {lesson}: {attended}/{held} · %{percent}{below}",
    ),
    "my.below": (" ⚠️ below {threshold}%", " ⚠️ %{threshold} altında"),
    "my.percent": ("{percent}%", "%{percent}"),
    "my.excused_part": (" ({excused} excused)", " ({excused} mazeretli)"),
    "my.course_hint": (
        "Tap a course for its dated list, missed sessions first.",
        "Tarihli liste için bir derse dokunun; katılmadıklarınız önce gelir.",
    ),
    "my.course_detail": (
        "🗂 <b>{lesson}</b>: {attended}/{held} · {percent}%",
        "🗂 <b>{lesson}</b>: {attended}/{held} · %{percent}",
    ),
    "note.excused": (" (excused)", " (mazeretli)"),
    "warning.below": (
        "⚠️ {lesson}: your attendance is {attended}/{held} ({percent}%), below {threshold}%.",
        "⚠️ {lesson}: devamınız {attended}/{held} (%{percent}), %{threshold} sınırının altında.",
    ),
    # --- export and excused absences (issue 13) --------------------------------------------
    "export.none": (
        "No saved sessions to export yet.",
        "Dışa aktarılacak kayıtlı yoklama henüz yok.",
    ),
    "export.choose_course": ("Which course?", "Hangi ders?"),
    "export.course_button": ("{lesson} · {sessions} sessions", "{lesson} · {sessions} ders"),
    "export.choose_format": (
        "<b>{lesson}</b>: which format? (CSV: UTF-8, fields separated by ;)",
        "<b>{lesson}</b>: hangi biçim? (CSV: UTF-8, alanlar ; ile ayrılır)",
    ),
    "export.both": ("XLSX + CSV", "XLSX + CSV"),
    "export.preview": (
        "<b>{lesson}</b>: {sessions} sessions, {students} students. Below {threshold}%: {below}",
        "<b>{lesson}</b>: {sessions} ders, {students} öğrenci. %{threshold} altında: {below}",
    ),
    "export.nobody": ("nobody", "kimse yok"),
    "button.add_saved": ("➕ Add a student", "➕ Öğrenci ekle"),
    "history.added": (
        "➕ {number} is added to this session as present.",
        "➕ {number} bu yoklamaya katıldı olarak eklendi.",
    ),
    "button.excuse": ("🩺 Excuse an absence", "🩺 Mazeretli say"),
    "excuse.choose": (
        "Which absent student is excused?",
        "Hangi katılmayan öğrenci mazeretli sayılsın?",
    ),
    "excuse.none": ("No absent student in this session.", "Bu yoklamada katılmayan öğrenci yok."),
    "excuse.ask_reason": (
        "Why is {number} excused (e.g. medical report)? Send the reason.",
        "{number} neden mazeretli (ör. sağlık raporu)? Gerekçeyi gönderin.",
    ),
    "excuse.ok": ("🩺 {number} is excused: {reason}", "🩺 {number} mazeretli sayıldı: {reason}"),
    "excuse.reason_invalid": (
        "Send a reason of 1 to 300 characters.",
        "1 ile 300 karakter arasında bir gerekçe gönderin.",
    ),
    # --- privacy (KVKK / GDPR notice) -------------------------------------------------------
    "privacy.text": (
        "<b>What ATTN keeps about you</b>\n"
        "• Your school number, full name and role, read from Aksis when you log in: to know "
        "who checks in and who teaches.\n"
        "• The link between this Telegram account and that school number, your language and "
        "your reminder setting: to answer you and send reminders.\n"
        "• Your lesson schedule, copied from Aksis at login: to find the current lesson and "
        "who is enrolled.\n"
        "• Your attendance records (time of check-in, late, absent, corrections): these "
        "belong to the university's attendance register.\n"
        "Your Aksis password is never stored, and your user name only for a moment, "
        "encrypted, during /login.\n\n"
        "<b>How long</b>\n"
        "The Telegram link lasts {student_days} days for students and {teacher_days} days "
        "for teachers, then you log in again. The link, schedule and preferences of an "
        "account with no login and no attendance for {retention_days} days are deleted "
        "automatically. Attendance records are kept as the university's rules require.\n\n"
        "<b>How to remove it</b>\n"
        "/logout deletes the link, your cached schedule and your preferences at once. "
        "For attendance records, contact your department.",
        "<b>ATTN sizinle ilgili neleri saklar</b>\n"
        "• Giriş yaptığınızda Aksis'ten okunan okul numaranız, adınız soyadınız ve rolünüz: "
        "yoklamaya kimin katıldığını ve dersi kimin verdiğini bilmek için.\n"
        "• Bu Telegram hesabıyla okul numaranız arasındaki bağlantı, diliniz ve hatırlatma "
        "ayarınız: size yanıt vermek ve hatırlatma göndermek için.\n"
        "• Girişte Aksis'ten kopyalanan ders programınız: şu anki dersi ve derse kayıtlı "
        "olanları bulmak için.\n"
        "• Yoklama kayıtlarınız (katılım saati, geç kalma, devamsızlık, düzeltmeler): "
        "bunlar üniversitenin yoklama kayıtlarıdır.\n"
        "Aksis şifreniz hiçbir zaman saklanmaz; kullanıcı adınız yalnızca /login sırasında "
        "kısa bir süre, şifrelenmiş olarak tutulur.\n\n"
        "<b>Ne kadar süre</b>\n"
        "Telegram bağlantısı öğrenciler için {student_days}, öğretim elemanları için "
        "{teacher_days} gün geçerlidir; sonra yeniden giriş yaparsınız. {retention_days} gün "
        "boyunca giriş yapılmayan ve yoklamaya katılınmayan hesabın bağlantısı, ders programı "
        "ve tercihleri otomatik olarak silinir. Yoklama kayıtları üniversitenin kurallarının "
        "gerektirdiği süre boyunca saklanır.\n\n"
        "<b>Nasıl silinir</b>\n"
        "/logout bağlantıyı, kayıtlı ders programınızı ve tercihlerinizi tek seferde siler. "
        "Yoklama kayıtları için bölümünüze başvurun.",
    ),
    # --- command menu --------------------------------------------------------------------
    "cmd.start": ("Start", "Başlat"),
    "cmd.help": ("What I can do", "Neler yapabilirim"),
    "cmd.login": ("Link your Aksis account", "Aksis hesabınızı bağlayın"),
    "cmd.logout": ("Unlink this account", "Bu hesabın bağlantısını kaldırın"),
    "cmd.me": ("Your linked account", "Bağlı hesabınız"),
    "cmd.cancel": ("Leave the current step", "Bulunduğunuz adımdan çıkın"),
    "cmd.start_session": ("Open attendance (teachers)", "Yoklama açın (öğretim elemanları)"),
    "cmd.end_session": ("Close attendance (teachers)", "Yoklamayı kapatın (öğretim elemanları)"),
    "cmd.attendees": ("Who is in (teachers)", "Katılanlar (öğretim elemanları)"),
    "cmd.history": ("Past sessions (teachers)", "Geçmiş yoklamalar (öğretim elemanları)"),
    "cmd.export": ("Term sheet of a course (teachers)", "Dönem çizelgesi (öğretim elemanları)"),
    "cmd.my_attendance": ("Your attendance (students)", "Devam durumunuz (öğrenciler)"),
    "cmd.reminders": ("Reminders on/off", "Hatırlatmalar açık/kapalı"),
    "cmd.privacy": ("What is kept about you", "Hakkınızda saklananlar"),
}

COMMANDS: Final = (
    "start",
    "help",
    "login",
    "start_session",
    "end_session",
    "attendees",
    "history",
    "export",
    "my_attendance",
    "reminders",
    "me",
    "logout",
    "privacy",
    "cancel",
)


def pick_language(language_code: str | None) -> str:
    """`tr` for Turkish Telegram clients, `en` for everyone else."""
    if language_code and language_code.lower().startswith("tr"):
        return "tr"
    return "en"


def t(key: str, lang: str, /, **values: object) -> str:
    """The message `key` in `lang`, with `values` HTML-escaped and filled in."""
    en, tr = _MESSAGES[key]
    template = tr if lang == "tr" else en
    if not values:
        return template
    return template.format(
        **{k: (v if isinstance(v, Raw) else escape(str(v), quote=False)) for k, v in values.items()}
    )


class Raw(str):
    """A value already rendered as HTML (another `t()` result); `t()` does not escape it."""

    __slots__ = ()


def keys() -> frozenset[str]:
    return frozenset(_MESSAGES)
