/*
 * AWS Signature Version 4 of the exports S3 store against AWS's published
 * vectors: the generic aws-sig-v4-test-suite (credentials AKIDEXAMPLE,
 * 2015-08-30, service "service") and the S3 examples of the S3 API reference
 * (examplebucket, 2013-05-24): GET with a Range header, PUT with a body, and
 * a presigned GET URL.
 */
#include "exports/exports.h"

#include <check.h>
#include <string.h>

#define SUITE_AK     "AKIDEXAMPLE"
#define SUITE_SK     "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_DATE   "20150830T123600Z"
#define S3_AK        "AKIAIOSFODNN7EXAMPLE"
#define S3_SK        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define S3_DATE      "20130524T000000Z"
#define S3_HOST      "examplebucket.s3.amazonaws.com"
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

START_TEST(test_sigv4_get_vanilla_matches_the_suite)
{
    exports_sigv4_header h[] = {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", SUITE_DATE}};
    exports_sigv4_request r = {.method = "GET",
                               .path = "/",
                               .query = "",
                               .headers = h,
                               .nheaders = 2,
                               .payload_hash = EMPTY_SHA256,
                               .region = "us-east-1",
                               .service = "service",
                               .amz_date = SUITE_DATE,
                               .access_key = SUITE_AK,
                               .secret_key = SUITE_SK};
    an_buf creq = AN_BUF_INIT, sts = AN_BUF_INIT, auth = AN_BUF_INIT;
    char sig[65];
    ck_assert_int_eq(exports_sigv4_sign(&r, &creq, &sts, &auth, sig, NULL), AN_OK);
    ck_assert_str_eq(creq.data, "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:" SUITE_DATE
                                "\n\nhost;x-amz-date\n" EMPTY_SHA256);
    ck_assert_str_eq(sts.data,
                     "AWS4-HMAC-SHA256\n" SUITE_DATE "\n20150830/us-east-1/service/aws4_request\n"
                     "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
    ck_assert_str_eq(sig, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    ck_assert_str_eq(auth.data,
                     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
                     "aws4_request, SignedHeaders=host;x-amz-date, "
                     "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    an_buf_free(&creq);
    an_buf_free(&sts);
    an_buf_free(&auth);
}
END_TEST

START_TEST(test_sigv4_sorts_query_parameters_by_name)
{
    exports_sigv4_header h[] = {{"x-amz-date", SUITE_DATE}, {"host", "example.amazonaws.com"}};
    exports_sigv4_request r = {.method = "GET",
                               .path = "/",
                               .query = "Param2=value2&Param1=value1",
                               .headers = h,
                               .nheaders = 2,
                               .payload_hash = EMPTY_SHA256,
                               .region = "us-east-1",
                               .service = "service",
                               .amz_date = SUITE_DATE,
                               .access_key = SUITE_AK,
                               .secret_key = SUITE_SK};
    an_buf creq = AN_BUF_INIT;
    char sig[65];
    ck_assert_int_eq(exports_sigv4_sign(&r, &creq, NULL, NULL, sig, NULL), AN_OK);
    ck_assert_ptr_nonnull(strstr(creq.data, "\nParam1=value1&Param2=value2\n"));
    ck_assert_str_eq(sig, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
    an_buf_free(&creq);
}
END_TEST

START_TEST(test_sigv4_s3_get_object_with_range_header)
{
    exports_sigv4_header h[] = {{"Host", S3_HOST},
                                {"Range", "bytes=0-9"},
                                {"x-amz-content-sha256", EMPTY_SHA256},
                                {"x-amz-date", S3_DATE}};
    exports_sigv4_request r = {.method = "GET",
                               .path = "/test.txt",
                               .query = "",
                               .headers = h,
                               .nheaders = 4,
                               .payload_hash = EMPTY_SHA256,
                               .region = "us-east-1",
                               .service = "s3",
                               .amz_date = S3_DATE,
                               .access_key = S3_AK,
                               .secret_key = S3_SK};
    an_buf sts = AN_BUF_INIT;
    char sig[65];
    ck_assert_int_eq(exports_sigv4_sign(&r, NULL, &sts, NULL, sig, NULL), AN_OK);
    ck_assert_str_eq(sts.data, "AWS4-HMAC-SHA256\n" S3_DATE "\n20130524/us-east-1/s3/aws4_request\n"
                               "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
    ck_assert_str_eq(sig, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    an_buf_free(&sts);
}
END_TEST

START_TEST(test_sigv4_s3_put_object_with_encoded_key)
{
    /* The key test$file.text travels encoded: '$' is %24. */
    an_buf path = AN_BUF_INIT;
    an_buf_addc(&path, '/');
    an_buf_add_uri_encoded(&path, "test$file.text", 14, true);
    ck_assert_str_eq(path.data, "/test%24file.text");
    const char *hash = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
    exports_sigv4_header h[] = {{"Host", S3_HOST},
                                {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                                {"x-amz-date", S3_DATE},
                                {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
                                {"x-amz-content-sha256", hash}};
    exports_sigv4_request r = {.method = "PUT",
                               .path = path.data,
                               .query = "",
                               .headers = h,
                               .nheaders = 5,
                               .payload_hash = hash,
                               .region = "us-east-1",
                               .service = "s3",
                               .amz_date = S3_DATE,
                               .access_key = S3_AK,
                               .secret_key = S3_SK};
    an_buf auth = AN_BUF_INIT;
    char sig[65];
    ck_assert_int_eq(exports_sigv4_sign(&r, NULL, NULL, &auth, sig, NULL), AN_OK);
    ck_assert_str_eq(sig, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
    ck_assert_ptr_nonnull(strstr(auth.data,
                                 "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;"
                                 "x-amz-storage-class, Signature="));
    an_buf_free(&auth);
    an_buf_free(&path);
}
END_TEST

START_TEST(test_sigv4_s3_presigned_get_url)
{
    exports_sigv4_request r = {.method = "GET",
                               .path = "/test.txt",
                               .region = "us-east-1",
                               .service = "s3",
                               .amz_date = S3_DATE,
                               .access_key = S3_AK,
                               .secret_key = S3_SK};
    an_buf q = AN_BUF_INIT;
    ck_assert_int_eq(exports_sigv4_presign(&r, S3_HOST, 86400, &q, NULL), AN_OK);
    ck_assert_str_eq(q.data,
                     "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%"
                     "2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-"
                     "Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature="
                     "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    an_buf_free(&q);
}
END_TEST

START_TEST(test_sigv4_presign_refuses_more_than_a_week)
{
    exports_sigv4_request r = {.method = "GET",
                               .path = "/a",
                               .region = "us-east-1",
                               .service = "s3",
                               .amz_date = S3_DATE,
                               .access_key = S3_AK,
                               .secret_key = S3_SK};
    an_buf q = AN_BUF_INIT;
    ck_assert_int_eq(exports_sigv4_presign(&r, S3_HOST, 604801, &q, NULL), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(exports_sigv4_presign(&r, S3_HOST, 0, &q, NULL), AN_INVALID_ARGUMENT);
    ck_assert_uint_eq(q.len, 0);
    an_buf_free(&q);
}
END_TEST

START_TEST(test_sigv4_header_values_are_trimmed_and_spaces_collapsed)
{
    exports_sigv4_header a[] = {{"host", "h"}, {"x-amz-meta-v", "  a   b  c "}};
    exports_sigv4_header b[] = {{"host", "h"}, {"x-amz-meta-v", "a b c"}};
    exports_sigv4_request r = {.method = "GET",
                               .path = "/",
                               .query = "",
                               .headers = a,
                               .nheaders = 2,
                               .payload_hash = EMPTY_SHA256,
                               .region = "us-east-1",
                               .service = "s3",
                               .amz_date = S3_DATE,
                               .access_key = S3_AK,
                               .secret_key = S3_SK};
    char s1[65], s2[65];
    ck_assert_int_eq(exports_sigv4_sign(&r, NULL, NULL, NULL, s1, NULL), AN_OK);
    r.headers = b;
    ck_assert_int_eq(exports_sigv4_sign(&r, NULL, NULL, NULL, s2, NULL), AN_OK);
    ck_assert_str_eq(s1, s2);
}
END_TEST

START_TEST(test_uri_encode_keeps_unreserved_and_slash_only)
{
    an_buf b = AN_BUF_INIT;
    an_buf_add_uri_encoded(&b, "a-b_c.d~e/f g+h=é", strlen("a-b_c.d~e/f g+h=é"), true);
    ck_assert_str_eq(b.data, "a-b_c.d~e/f%20g%2Bh%3D%C3%A9");
    an_buf_reset(&b);
    an_buf_add_uri_encoded(&b, "a/b", 3, false);
    ck_assert_str_eq(b.data, "a%2Fb");
    an_buf_free(&b);
}
END_TEST

Suite *exports_sigv4_suite(void)
{
    Suite *s = suite_create("exports_sigv4");
    TCase *tc = tcase_create("sigv4");
    tcase_add_test(tc, test_sigv4_get_vanilla_matches_the_suite);
    tcase_add_test(tc, test_sigv4_sorts_query_parameters_by_name);
    tcase_add_test(tc, test_sigv4_s3_get_object_with_range_header);
    tcase_add_test(tc, test_sigv4_s3_put_object_with_encoded_key);
    tcase_add_test(tc, test_sigv4_s3_presigned_get_url);
    tcase_add_test(tc, test_sigv4_presign_refuses_more_than_a_week);
    tcase_add_test(tc, test_sigv4_header_values_are_trimmed_and_spaces_collapsed);
    tcase_add_test(tc, test_uri_encode_keeps_unreserved_and_slash_only);
    suite_add_tcase(s, tc);
    return s;
}
