/*
 * pii.h - what keeps the hot tier PII-free: the configurable list of PII
 * property keys, and the masking of string values that look like e-mail
 * addresses, phone numbers or IP addresses wherever they appear.
 *
 * Keys are compared normalised: ASCII letters lowercased, '_', '-', '.' and
 * ' ' dropped, so "firstName", "first_name" and "First-Name" are one key. An
 * entry starting with '*' matches every key that ends with the rest
 * ("*email" matches "email", "userEmail", "billing_email").
 *
 * List syntax (ANALYTICS_INGEST_PII_KEYS): comma-separated entries, each
 * "key" (the default action) or "key:remove" / "key:hash".
 *
 * Value masking (ingest_pii_mask) replaces, inside any string:
 *   - e-mail addresses  local@domain.tld                      -> "[email]"
 *   - IPv4 dotted quads (each part 0..255); IPv6 addresses     -> "[ip]"
 *   - phone numbers: '+' and 7..15 digits with separators, or
 *     10..15 digits in groups of at most 4 separated by ' ', '-',
 *     '.', '(' or ')', the last of 4 digits ("555-123-4567") or,
 *     after a trunk 0, 4 or 5 groups of 2 to 4 ("06 12 34 56 78");
 *     not a date such as 2026-01-02 10                         -> "[phone]"
 * A match starts where nothing word-like is glued before it, or after a
 * label and a colon ("ip:10.0.0.1", "tel:+15551234567").
 * Known limits: a bare run of digits ("5551234567") is not taken for a phone
 * number (it is as likely an id or a timestamp); a four-part version number
 * ("1.2.3.4") is taken for an IP address. Keys are masked the same way.
 *
 * Everything here is thread-safe once the rules are built; nothing
 * allocates except into the caller's buffers.
 */
#ifndef INGEST_PII_H
#define INGEST_PII_H

#include "common/buf.h"
#include "common/status.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum ingest_pii_action {
    INGEST_PII_KEEP = 0, /* not a PII key */
    INGEST_PII_REMOVE,   /* drop the property */
    INGEST_PII_HASH,     /* replace the value by its HMAC-SHA-256 (hex) */
} ingest_pii_action;

/* The default list of ANALYTICS_INGEST_PII_KEYS: contact details, person
 * names (also as the end of a longer key: "studentFirstName"), addresses,
 * IPs, birth dates, national ids, passports, secrets, payment cards. */
#define INGEST_PII_DEFAULT_KEYS                                                                    \
    "*email,*emailaddress,mail,*phone,*phonenumber,mobile,tel,telephone,fax,name,*firstname,"      \
    "*lastname,*fullname,*givenname,*familyname,*surname,*middlename,*displayname,*username,"      \
    "*nickname,customername,studentname,learnername,teachername,instructorname,contactname,"       \
    "recipientname,sendername,parentname,guardianname,authorname,ownername,cardholder,"            \
    "*cardholdername,holdername,*address,street,postcode,postalcode,zip,zipcode,ip,ipv4,ipv6,"     \
    "clientip,remoteip,userip,sourceip,ssn,socialsecuritynumber,nationalid,*passport,"             \
    "*passportnumber,*passportno,taxid,dob,*dateofbirth,*birthdate,birthday,*password,*passwd,"    \
    "*iban,*creditcard,*cardnumber,*creditcardnumber,cvv,cvc"

typedef struct ingest_pii_rules ingest_pii_rules;

/* Build the rules from a list (syntax above); default_action applies to
 * entries without ":remove"/":hash". AN_INVALID_ARGUMENT names a bad entry.
 * Free with ingest_pii_rules_free. */
an_status ingest_pii_rules_new(const char *list, ingest_pii_action default_action,
                               ingest_pii_rules **out, an_error *err);
void ingest_pii_rules_free(ingest_pii_rules *r);

/* Number of entries (for the start-up log line). */
size_t ingest_pii_rules_count(const ingest_pii_rules *r);

/* What to do with a property of this key (raw bytes, any length). */
ingest_pii_action ingest_pii_key_action(const ingest_pii_rules *r, const char *key, size_t len);

/* Append s to out with every PII-looking part replaced by its mask. Returns
 * the number of parts masked; 0 (s needs no change): nothing is appended,
 * so the common case copies nothing. */
size_t ingest_pii_mask(const char *s, size_t len, an_buf *out);

#endif
