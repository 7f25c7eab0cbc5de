//! One fresh database per test, set up by the production code path (platform migrations,
//! reference territories, département provisioning), so tests never share state.

use foundation::tenancy::migrate::{self, DEPARTEMENT_MIGRATIONS};
use foundation::tenancy::{DepartementCode, TenantLogin};
use sqlx::PgPool;

use crate::stack_var;

/// A database of its own, with an administrator pool and the application's URL.
pub struct TestDatabase {
    pub name: String,
    pub admin: PgPool,
    pub admin_url: String,
    pub app_url: String,
    pub app_role: String,
}

fn with_database(url: &str, database: &str) -> String {
    let (base, _) = url
        .rsplit_once('/')
        .expect("URL de base de données sans nom de base");
    format!("{base}/{database}")
}

/// The application's login role of the stack.
pub fn app_role() -> String {
    user_of(&stack_var("AC_TEST_APP_URL"))
}

/// The user name of a `postgres://user:password@host/db` URL.
fn user_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split(['@', ':']).next().unwrap_or_default().to_owned()
}

impl TestDatabase {
    /// Creates an empty database and applies the platform migrations to it.
    pub async fn create() -> TestDatabase {
        Self::create_on(
            &stack_var("AC_TEST_ADMIN_URL"),
            &stack_var("AC_TEST_APP_URL"),
        )
        .await
    }

    /// [`TestDatabase::create`] on another cluster (URLs of its administrator and of the
    /// application's login role, any database name).
    pub async fn create_on(admin_url: &str, app_url: &str) -> TestDatabase {
        let name = format!("t_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let server = migrate::connect_admin(admin_url, 1)
            .await
            .expect("connexion administrateur");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&server)
            .await
            .expect("CREATE DATABASE");
        server.close().await;
        let admin_url = with_database(admin_url, &name);
        let app_role = user_of(app_url);
        let admin = migrate::connect_admin(&admin_url, 8)
            .await
            .expect("connexion à la base de test");
        migrate::migrate_platform(&admin, &app_role)
            .await
            .expect("migrations de la plateforme");
        TestDatabase {
            app_url: with_database(app_url, &name),
            name,
            admin,
            admin_url,
            app_role,
        }
    }

    /// How the applications under test log in as département roles (the default settings).
    pub fn tenant_login() -> TenantLogin {
        TenantLogin::from_settings(&foundation::config::Settings::default().database)
    }

    /// Creates a database with these départements provisioned and ready.
    pub async fn with_departements(codes: &[&str]) -> TestDatabase {
        let db = Self::create().await;
        for code in codes {
            db.provision(code).await;
        }
        db
    }

    /// Provisions one département schema through the production path; panics if it fails.
    pub async fn provision(&self, code: &str) {
        let departement = DepartementCode::parse(code).expect("code de département");
        let report = migrate::provision_departement(
            &self.admin,
            &self.app_role,
            &Self::tenant_login(),
            departement,
            &DEPARTEMENT_MIGRATIONS,
        )
        .await
        .expect("provisionnement");
        if let Err(e) = report.result {
            panic!("le schéma du département {code} n'a pas pu être migré : {e}");
        }
    }
}
