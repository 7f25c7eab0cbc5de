// Test identities of the FranceConnect stand-in, modelled on FranceConnect's public
// demonstration identities (see shared/spec/franceconnect.md §C), plus deliberately bad ones
// for negative tests. The login is what one types on the stand-in's login page.
export const IDENTITIES = {
  test: {
    given_name: 'Angela Claire Louise', family_name: 'DUBOIS', birthdate: '1962-08-24',
    gender: 'female', birthplace: '75107', birthcountry: '99100',
    email: 'angela.dubois@example.test',
  },
  avec_nom_dusage: {
    given_name: 'Pierre', family_name: 'MERCIER', preferred_username: 'DUBOIS',
    birthdate: '1969-03-17', gender: 'male', birthplace: '95277', birthcountry: '99100',
    email: 'pierre.mercier@example.test',
  },
  born_abroad: {
    given_name: 'Elena', family_name: 'ROSSI', birthdate: '1990-00-00', gender: 'female',
    birthplace: '', birthcountry: '99127', email: 'elena.rossi@example.test',
  },
  // A person whose identity provider gives no e-mail address: receipts need a phone or an
  // address typed by the aidant.
  sans_courriel: {
    given_name: 'Lucien', family_name: 'FAURE', birthdate: '1941-05-02', gender: 'male',
    birthplace: '33063', birthcountry: '99100',
  },
  // Negative cases: an INSEE code that does not exist, and a missing mandatory claim.
  bad_birthplace: {
    given_name: 'Jean', family_name: 'ERREUR', birthdate: '1980-01-01', gender: 'male',
    birthplace: '99999', birthcountry: '99100',
  },
  missing_birthdate: {
    given_name: 'Marie', family_name: 'INCOMPLET', gender: 'female',
    birthplace: '75056', birthcountry: '99100',
  },
};
