// SPDX-License-Identifier: MIT
// A throwaway self-signed P-256 certificate (CN=t, valid for an hour) for unit
// tests that run a real TLS handshake. Header-only, like tap.h.
#ifndef KS_TESTS_SELFSIGNED_H
#define KS_TESTS_SELFSIGNED_H

#include <openssl/evp.h>
#include <openssl/x509.h>

/* 0 with *pk and *crt set (the caller frees both), or -1. */
static inline int selfsigned_make(EVP_PKEY **pk, X509 **crt)
{
	*pk = EVP_EC_gen("P-256");
	*crt = X509_new();
	if (!*pk || !*crt)
		return -1;
	X509_set_version(*crt, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(*crt), 1);
	X509_gmtime_adj(X509_getm_notBefore(*crt), 0);
	X509_gmtime_adj(X509_getm_notAfter(*crt), 3600);
	X509_set_pubkey(*crt, *pk);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(*crt), "CN", MBSTRING_ASC, (const unsigned char *)"t", -1,
				   -1, 0);
	X509_set_issuer_name(*crt, X509_get_subject_name(*crt));
	return X509_sign(*crt, *pk, EVP_sha256()) > 0 ? 0 : -1;
}

#endif
